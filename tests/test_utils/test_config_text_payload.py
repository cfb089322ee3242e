"""Config text stored in a checkpoint is never executed.

A clean training checkpoint of the toy task whose ``meta['config']``,
``meta['cfg']`` and ``message_hub.runtime_info.cfg`` hold Python that
creates a marker file when a config parser runs it (no pickled global at
all). MMEngine's ``Runner.resume`` runs ``meta['config']``; the old export
tool ran ``meta['cfg']``.
"""
import importlib.util
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmkd_toy import REPO, subprocess_env, toy_config

from mmkd_channel.utils import safe_torch_load


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """A toy run of 1 epoch: its config file and epoch_1.pth."""
    tmp = tmp_path_factory.mktemp('cfgtext')
    cfg = toy_config(str(tmp / 'work'), max_epochs=1)
    cfg_path = str(tmp / 'toy.py')
    cfg.dump(cfg_path)
    Runner.from_cfg(Config.fromfile(cfg_path)).train()
    return dict(cfg=cfg_path, ckpt=str(tmp / 'work' / 'epoch_1.pth'))


def payload(marker) -> str:
    return f"_ = __import__('os').system('touch {marker}')\n"


@pytest.fixture
def evil(trained, tmp_path) -> dict:
    """The trained checkpoint with config text that touches MARKER, alone
    in its directory (no dumped config next to it)."""
    marker = tmp_path / 'MARKER'
    ckpt = safe_torch_load(trained['ckpt'])
    ckpt['meta']['config'] = ckpt['meta']['cfg'] = payload(marker)
    ckpt['message_hub'].setdefault('runtime_info', {})['cfg'] = \
        payload(marker)
    (tmp_path / 'ckpts').mkdir()
    path = str(tmp_path / 'ckpts' / 'epoch_1.pth')
    torch.save(ckpt, path)
    return dict(path=path, marker=marker, cfg=trained['cfg'])


def test_payload_is_real(tmp_path):
    """Positive control: a config parser executes such text."""
    marker = tmp_path / 'MARKER'
    Config.fromstring(payload(marker), file_format='.py')
    assert marker.exists()


def test_resume_ignores_the_config_text(evil, tmp_path):
    cfg = Config.fromfile(evil['cfg'])
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_epochs = 2
    cfg.resume, cfg.load_from = True, evil['path']
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert not evil['marker'].exists(), 'the config text ran'
    assert runner.epoch == 2
    assert osp.isfile(tmp_path / 'work' / 'epoch_2.pth')


def test_train_py_resume(evil, tmp_path):
    proc = subprocess.run([
        sys.executable, 'tools/train.py', evil['cfg'], '--resume',
        evil['path'], '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'train_cfg.max_epochs=2'
    ],
                          cwd=REPO,
                          env=subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'resumed epoch: 1, iter: 4' in proc.stdout + proc.stderr
    assert not evil['marker'].exists(), 'the config text ran'
    assert osp.isfile(tmp_path / 'work' / 'epoch_2.pth')


def load_tool(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_needs_a_config_file(evil, tmp_path):
    tool = load_tool('tools/model_converters/export_student.py', 'export')
    out = str(tmp_path / 'student.pth')
    with pytest.raises(FileNotFoundError) as e:
        tool.export_student(evil['path'], out)
    msg = str(e.value)
    assert '--config' in msg and 'dumped' in msg and evil['path'] in msg
    assert not evil['marker'].exists(), 'the config text ran'
    assert not osp.exists(out)


def test_export_uses_the_dumped_config(evil, tmp_path):
    """MMEngine dumps the run's config into the work dir, next to the
    checkpoints: the export takes that file."""
    ckpt = safe_torch_load(evil['path'])
    stem = ckpt['meta']['experiment_name'].rsplit('_', 2)[0]
    shutil.copy(evil['cfg'], osp.join(osp.dirname(evil['path']), f'{stem}.py'))
    shutil.copy(evil['cfg'], osp.join(osp.dirname(evil['path']),
                                      'other.py'))  # not the one: ignored
    tool = load_tool('tools/model_converters/export_student.py', 'export')
    out = str(tmp_path / 'student.pth')
    tool.export_student(evil['path'], out)
    assert not evil['marker'].exists(), 'the config text ran'
    exported = safe_torch_load(out)
    assert 'MMKDToyNet' in exported['meta']['cfg']
    assert 'touch' not in exported['meta']['cfg']
    for k, v in exported['state_dict'].items():
        assert torch.equal(v, ckpt['state_dict'][f'student.{k}']), k


def test_tools_test_py(evil, tmp_path):
    proc = subprocess.run([
        sys.executable, 'tools/test.py', evil['cfg'], evil['path'],
        '--work-dir',
        str(tmp_path / 'test')
    ],
                          cwd=REPO,
                          env=subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'accuracy' in proc.stdout + proc.stderr
    assert not evil['marker'].exists(), 'the config text ran'


def test_visualize_channels_loading(evil):
    """The tool's checkpoint loading (its drawing needs an image pipeline,
    which the toy task has not)."""
    tool = load_tool('tools/analysis_tools/visualize_channels.py', 'vis')
    model = tool.build_distiller(Config.fromfile(evil['cfg']), evil['path'])
    assert not evil['marker'].exists(), 'the config text ran'
    sd = safe_torch_load(evil['path'])['state_dict']
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_mmengine_inferencer_path(evil):
    """MMEngine's inferencers build a model from the checkpoint's config
    text when given weights only; through mmkd_channel's loaders there is
    none to run."""
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(evil['path'], map_location='cpu')
    assert 'cfg' not in ckpt['meta'] and 'config' not in ckpt['meta']
    assert 'cfg' not in ckpt['message_hub'].get('runtime_info', {})
    assert not evil['marker'].exists()
