"""Distillation configs run through the host toolboxes' own entry points
(mmdet's, mmseg's and mmpretrain's ``tools/train.py`` / ``tools/test.py``
from their wheels' ``.mim`` folders and ``mim train mmdet``), reaching
mmkd_channel through the configs' ``custom_imports`` alone."""
import glob
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmkd_toy import MMDET_TRAIN, REPO, subprocess_env

from mmkd_channel.testing import make_cityscapes, make_imagenet
from mmkd_channel.testing.tiny_configs import tiny_cls_config, tiny_seg_config
from mmkd_channel.utils import safe_torch_load

HOSTS = ('mmdet', 'mmseg', 'mmpretrain')


def host_tool(host: str, name: str) -> str:
    """``<host>/.mim/tools/<name>.py`` of the installed host package."""
    spec = importlib.util.find_spec(host)
    return osp.join(osp.dirname(spec.origin), '.mim', 'tools', f'{name}.py')


def installed_env() -> dict:
    """Only the installed packages and this repository's package (as an
    editable install provides it): nothing imports mmkd_channel but the
    configs' ``custom_imports``."""
    env = subprocess_env()
    env['PYTHONPATH'] = REPO
    return env


def run(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable] + list(args),
        cwd=str(cwd),
        env=installed_env(),
        capture_output=True,
        text=True,
        timeout=300)


def shipped_configs() -> list:
    return sorted(
        p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) != '_base_')


def check_run(work_dir: str, proc: subprocess.CompletedProcess,
              term: str) -> str:
    """The run trained the distiller and checkpointed the student only."""
    assert proc.returncode == 0, proc.stderr[-4000:]
    (ckpt, ) = glob.glob(osp.join(work_dir, 'epoch_1.pth')) or glob.glob(
        osp.join(work_dir, 'iter_*.pth'))
    keys = list(safe_torch_load(ckpt)['state_dict'])
    assert any(k.startswith('student.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        assert f'loss_distill_{term}' in f.read()
    return ckpt


PARSE = """
import json, sys
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
out = {}
for path in sys.argv[1:]:
    # as the hosts' tools/train.py: parse first (custom_imports import us)
    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    with MODELS.switch_scope_and_registry(cfg.default_scope) as registry:
        model = registry.get(cfg.model.type)
    out[path] = dict(
        scope=cfg.default_scope,
        imports=list(cfg.get('custom_imports', {}).get('imports', [])),
        model=getattr(model, '__name__', None))
print(json.dumps(out))
"""


def test_every_shipped_config_is_reached_through_custom_imports(tmp_path):
    configs = shipped_configs()
    proc = run(['-c', PARSE] + configs, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    distill = 0
    for path in configs:
        info = found[path]
        assert info['scope'] in HOSTS, (path, info)
        assert 'mmkd_channel' in info['imports'], (path, info)
        distill += info['model'] == 'FeatureDistiller'
    assert distill >= len(configs) - 1  # all but the MobileNetV1 baseline


def test_mmdet_own_train_py(mmdet_trained):
    assert osp.isfile(MMDET_TRAIN)
    assert mmdet_trained['custom_imports'] == ['mmkd_channel']
    check_run(mmdet_trained['work_dir'], mmdet_trained['proc'], 'fpn')


def test_mmdet_own_test_py(mmdet_trained, tmp_path):
    proc = run([
        host_tool('mmdet', 'test'), mmdet_trained['cfg'],
        mmdet_trained['checkpoint'], '--work-dir',
        str(tmp_path)
    ], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr


def distill_config(dataset: str) -> str:
    for path in shipped_configs():
        cfg = Config.fromfile(path)
        if (cfg.model.type.endswith('FeatureDistiller')
                and cfg.train_dataloader.dataset.type == dataset):
            return path
    raise AssertionError(f'no shipped distillation config on {dataset}')


@pytest.mark.parametrize('host', ['mmseg', 'mmpretrain'])
def test_host_own_train_and_test_py(host, tmp_path):
    if host == 'mmseg':
        data = make_cityscapes(
            tmp_path / 'data', num_train=2, num_val=1, img_size=(64, 128))
        cfg = Config.fromfile(distill_config('CityscapesDataset'))
        # batch 2: PSPNet's pyramid pooling normalises 1x1 maps
        tiny_seg_config(cfg, data, str(tmp_path / 'work'), batch_size=2)
        metric = 'mIoU'
    else:
        data = make_imagenet(
            tmp_path / 'data',
            num_classes=2,
            per_class_train=1,
            per_class_val=1,
            img_size=(32, 32))
        cfg = Config.fromfile(distill_config('ImageNet'))
        tiny_cls_config(
            cfg, data, str(tmp_path / 'work'), img_size=32, batch_size=2)
        metric = 'accuracy/top1'
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg_path = str(tmp_path / 'tiny.py')
    cfg.dump(cfg_path)
    assert osp.isfile(host_tool(host, 'train')), 'the host wheel has no tools'
    proc = run([host_tool(host, 'train'), cfg_path], tmp_path)
    term = next(iter(cfg.model.distill))
    ckpt = check_run(str(tmp_path / 'work'), proc, term)
    proc = run([
        host_tool(host, 'test'), cfg_path, ckpt, '--work-dir',
        str(tmp_path / 'test')
    ], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert metric in proc.stdout + proc.stderr


@pytest.mark.skipif(
    importlib.util.find_spec('mim') is None,
    reason='openmim is not installed in this environment')
def test_mim_train_mmdet(mmdet_trained, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = subprocess.run([
        sys.executable, '-m', 'mim', 'train', 'mmdet', mmdet_trained['cfg'],
        '--work-dir', work_dir
    ],
                          cwd=str(tmp_path),
                          env=installed_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    check_run(work_dir, proc, 'fpn')


def test_mmkd_channel_scope_works_once_imported(tmp_path):
    """``_base_ = 'mmkd_channel::...'`` parses after ``import mmkd_channel``
    (our tools import it first; the docs give the fix for host tools)."""
    import mmkd_channel  # noqa: F401
    path = shipped_configs()[0]
    rel = osp.relpath(path, osp.join(REPO, 'configs'))
    user = tmp_path / 'mine.py'
    user.write_text(f"_base_ = ['mmkd_channel::{rel}']\n")
    cfg = Config.fromfile(str(user))
    assert cfg.model.type == Config.fromfile(path).model.type
