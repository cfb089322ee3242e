"""Checkpoints are written atomically: a crash while saving loses nothing."""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch
from mmkd_toy import REPO, subprocess_env, toy_config

from mmkd_channel.utils import atomic_torch_save, safe_torch_load


def test_mmengine_uses_the_atomic_writer():
    import mmengine.runner as mmengine_runner
    from mmengine.runner import checkpoint as ckpt_module
    from mmengine.runner import runner as runner_module

    from mmkd_channel.utils import checkpoint as ours
    for module in (ckpt_module, runner_module, mmengine_runner):
        assert module.save_checkpoint is ours.save_checkpoint


def test_atomic_torch_save_replaces_and_cleans_up(tmp_path):
    path = str(tmp_path / 'a.pth')
    atomic_torch_save({'w': torch.ones(3)}, path)
    atomic_torch_save({'w': torch.zeros(3)}, path)
    assert torch.equal(safe_torch_load(path)['w'], torch.zeros(3))
    assert os.listdir(tmp_path) == ['a.pth']  # no temporary file left
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)  # umask, not 600


def test_failed_save_keeps_old_file(tmp_path):
    path = str(tmp_path / 'a.pth')
    atomic_torch_save({'w': torch.ones(3)}, path)

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        atomic_torch_save({'w': Unpicklable()}, path)
    assert torch.equal(safe_torch_load(path)['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['a.pth']


def crash_while_saving(tmp_path, original: bool):
    """Train the toy task, overwriting ``latest.pth`` every epoch; SIGKILL
    the process after 4 kB of the epoch-2 checkpoint reached the disk."""
    work_dir = str(tmp_path / 'work')
    cfg = toy_config(
        work_dir,
        max_epochs=2,
        val=False,
        custom_hooks=[
            dict(
                type='MMKDToyCrashSaveHook',
                at_epoch=2,
                after_bytes=4096,
                original=original)
        ])
    cfg.default_hooks.checkpoint.filename_tmpl = 'latest.pth'
    cfg.dump(str(tmp_path / 'toy.py'))
    proc = subprocess.run(
        [sys.executable, 'tools/train.py',
         str(tmp_path / 'toy.py')],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    return work_dir


def test_kill_during_checkpoint_save_keeps_previous(tmp_path):
    work_dir = crash_while_saving(tmp_path, original=False)
    latest = osp.join(work_dir, 'latest.pth')
    ckpt = safe_torch_load(latest)  # the epoch-1 checkpoint, complete
    assert ckpt['meta']['epoch'] == 1
    assert any(k.startswith('student.') for k in ckpt['state_dict'])
    # the interrupted write is the stale temporary file, cut at 4 kB
    (tmp, ) = glob.glob(osp.join(work_dir, '.latest.pth.*.tmp'))
    assert os.path.getsize(tmp) == 4096
    with pytest.raises(RuntimeError, match='truncated'):
        safe_torch_load(tmp)
    # and --resume continues from the intact checkpoint
    proc = subprocess.run([
        sys.executable, 'tools/train.py',
        str(tmp_path / 'toy.py'), '--resume', latest, '--cfg-options',
        'custom_hooks=[]'
    ],
                          cwd=REPO,
                          env=subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert safe_torch_load(latest)['meta']['epoch'] == 2


def test_negative_control_mmengine_writer_leaves_truncated_file(tmp_path):
    """The same crash with MMEngine's own writer destroys the checkpoint:
    the test above would catch a non-atomic save."""
    work_dir = crash_while_saving(tmp_path, original=True)
    latest = osp.join(work_dir, 'latest.pth')
    assert os.path.getsize(latest) == 4096
    with pytest.raises(RuntimeError, match='truncated'):
        safe_torch_load(latest)
