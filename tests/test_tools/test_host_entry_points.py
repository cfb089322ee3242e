"""A distillation config trains through the host toolbox's own entry
points, reaching mmkd_channel through ``custom_imports`` alone."""
import glob
import importlib.util
import os.path as osp
import shutil
import subprocess

import pytest
from mmkd_toy import MMDET_TRAIN, subprocess_env

from mmkd_channel.utils import safe_torch_load


def check_run(work_dir: str, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = safe_torch_load(osp.join(work_dir, 'epoch_1.pth'))
    keys = list(ckpt['state_dict'])
    assert any(k.startswith('student.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        assert 'loss_distill_fpn' in f.read()


def test_mmdet_own_train_py(mmdet_trained):
    assert osp.isfile(MMDET_TRAIN)
    assert mmdet_trained['custom_imports'] == ['mmkd_channel']
    check_run(mmdet_trained['work_dir'], mmdet_trained['proc'])


@pytest.mark.skipif(
    importlib.util.find_spec('mim') is None or shutil.which('mim') is None,
    reason='openmim is not installed in this environment')
def test_mim_train_mmdet(mmdet_trained, tmp_path):
    env = subprocess_env()
    env.pop('PYTHONPATH', None)
    work_dir = str(tmp_path / 'work')
    proc = subprocess.run([
        'mim', 'train', 'mmdet', mmdet_trained['cfg'], '--work-dir', work_dir
    ],
                          cwd=str(tmp_path),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    check_run(work_dir, proc)
