"""Checkpoint and work-dir failures say what is wrong, where, and the fix."""
import errno
import glob
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.runner import Runner
from mmkd_toy import REPO, MMKDToyNet, subprocess_env, toy_config
from toy_models import toy_cfg

from mmkd_channel.models.distillers import FeatureDistiller
from mmkd_channel.registry import MODELS
from mmkd_channel.utils import (CheckpointSaveError, NotACheckpointError,
                                atomic_torch_save, restricted_torch_load,
                                safe_torch_load)
from mmkd_channel.utils import save as save_module


def good_checkpoint(path) -> str:
    torch.save({'state_dict': MMKDToyNet(width=16).state_dict()}, str(path))
    return str(path)


def html(tmp_path) -> tuple:
    path = tmp_path / 'teacher.pth'
    path.write_text('<!DOCTYPE html><html><body>Sign in</body></html>')
    return str(path), 'HTML page'


def empty(tmp_path) -> tuple:
    path = tmp_path / 'teacher.pth'
    path.write_bytes(b'')
    return str(path), 'empty (0 bytes)'


def truncated(tmp_path) -> tuple:
    data = open(good_checkpoint(tmp_path / 'full.pth'), 'rb').read()
    path = tmp_path / 'teacher.pth'
    path.write_bytes(data[:len(data) // 2])
    return str(path), 'truncated'


def legacy_truncated(tmp_path) -> tuple:
    full = tmp_path / 'full.pth'
    torch.save({'state_dict': MMKDToyNet(width=16).state_dict()},
               str(full),
               _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    path = tmp_path / 'teacher.pth'
    path.write_bytes(data[:len(data) // 2])
    return str(path), 'truncated'


NOT_CHECKPOINTS = dict(
    html=html,
    empty=empty,
    truncated=truncated,
    legacy_truncated=legacy_truncated)


@pytest.mark.parametrize('kind', sorted(NOT_CHECKPOINTS))
@pytest.mark.parametrize(
    'reader', [safe_torch_load, restricted_torch_load, 'teacher_ckpt'],
    ids=['strict', 'restricted', 'teacher_ckpt'])
def test_not_a_checkpoint(tmp_path, kind, reader):
    path, words = NOT_CHECKPOINTS[kind](tmp_path)
    with pytest.raises(NotACheckpointError) as e:
        if reader == 'teacher_ckpt':
            cfg = dict(
                student=toy_cfg(8),
                teacher=toy_cfg(16),
                teacher_ckpt=path,
                distill=dict(
                    fpn=dict(student='neck', loss=dict(type='FeatureL2Loss'))),
                check_input_shape=None)
            FeatureDistiller(**cfg)
        else:
            reader(path)
    msg = str(e.value)
    assert path in msg and words in msg
    assert 'PyTorch checkpoint' in msg
    assert 'unsafe' not in msg.lower() and 'execute' not in msg
    if reader == 'teacher_ckpt':
        assert msg.startswith('teacher_ckpt')


def test_load_from_another_model_is_refused_with_counts(tmp_path):
    """A checkpoint of the student model alone (no ``student.`` prefix)."""
    path = str(tmp_path / 'student_only.pth')
    torch.save({'state_dict': MMKDToyNet(width=8).state_dict()}, path)
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1, val=False)
    cfg.load_from = path
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError) as e:
        runner.train()
    msg = str(e.value)
    own = len(runner.model.state_dict())
    assert path in msg
    assert f"only 0 of the model's {own} weights match" in msg
    assert '(8 keys)' in msg
    assert "init_cfg=dict(type='Pretrained'" in msg
    assert runner.iter == 0
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))


def test_load_from_half_matching_loads(tmp_path):
    """The threshold: a checkpoint with most of the model loads."""
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1, val=False)
    runner = Runner.from_cfg(cfg)
    sd = runner.model.state_dict()
    keep = dict(list(sd.items())[:(len(sd) + 1) // 2])
    path = str(tmp_path / 'half.pth')
    torch.save({'state_dict': keep}, path)
    cfg.load_from = path
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    for k, v in keep.items():
        assert torch.equal(runner.model.state_dict()[k], v), k


@MODELS.register_module(force=True)
class MMKDTestBrokenLoss(torch.nn.Module):
    """A user loss with a bug."""

    def forward(self, student_feat, teacher_feat):
        return student_feat.no_such_attribute


def test_user_loss_error_keeps_the_distill_key():
    with pytest.raises(AttributeError) as e:
        FeatureDistiller(
            student=toy_cfg(8),
            teacher=toy_cfg(8),
            distill=dict(
                fpn=dict(
                    student='backbone.2',
                    teacher='backbone.5',
                    loss=dict(type='MMKDTestBrokenLoss'))),
            check_input_shape=(1, 3, 16, 16))
    msg = str(e.value)
    for part in ("distill['fpn']", "student 'backbone.2'",
                 "teacher 'backbone.5'", '(1, 8, 16, 16)', '(1, 8, 8, 8)',
                 'no_such_attribute'):
        assert part in msg, (part, msg)


def run_train(args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, 'tools/train.py', *args],
                          cwd=REPO,
                          env=env or subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=240)


def test_work_dir_that_is_a_file(tmp_path):
    cfg_path = str(tmp_path / 'toy.py')
    toy_config(str(tmp_path / 'work')).dump(cfg_path)
    (tmp_path / 'afile').write_text('notes')
    proc = run_train([cfg_path, '--work-dir', str(tmp_path / 'afile')])
    assert proc.returncode != 0
    assert 'is an existing file, not a directory' in proc.stderr
    assert str(tmp_path / 'afile') in proc.stderr
    assert (tmp_path / 'afile').read_text() == 'notes'


def test_stale_tmp_files_are_removed_at_start(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    stale = work / '.epoch_1.pth.4242.0123abcd.tmp'
    stale.write_bytes(b'PK\x03\x04' + b'\0' * 4096)
    other = work / 'notes.tmp'  # not ours: kept
    other.write_text('keep')
    cfg_path = str(tmp_path / 'toy.py')
    toy_config(str(work), max_epochs=1, val=False).dump(cfg_path)
    proc = run_train([cfg_path])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not stale.exists() and other.exists()
    logs = glob.glob(str(work / '*' / '*.log'))
    text = open(logs[0]).read()
    assert f'removed {str(stale)!r} (4,100 bytes)' in text
    assert osp.isfile(work / 'epoch_1.pth')


def test_disk_full_before_writing(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pth')
    atomic_torch_save({'w': torch.ones(3)}, path)
    monkeypatch.setattr(save_module, '_free_bytes', lambda d: 1000)
    with pytest.raises(CheckpointSaveError) as e:
        atomic_torch_save({'w': torch.zeros(1 << 20)}, path)
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC
    assert path in msg and '1,000 bytes are free' in msg
    assert f'{(1 << 22) + (1 << 20):,} bytes' in msg  # 4 MB + 1 MB margin
    assert 'previous checkpoint there is intact' in msg
    assert torch.equal(safe_torch_load(path)['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pth']


WRITE_FAILS = textwrap.dedent('''
    import resource, signal, sys, torch
    from mmkd_channel.utils import atomic_torch_save
    path = sys.argv[1]
    atomic_torch_save({'w': torch.ones(3)}, path)
    # the file system refuses writes beyond 256 kB from here on (EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, 1 << 18))
    try:
        atomic_torch_save({'w': torch.zeros(1 << 20)}, path)
    except OSError as e:
        print('ERROR', type(e).__name__, e)
''')


def test_disk_full_while_writing(tmp_path):
    """The write itself fails half-way (a real OS error, not a check)."""
    path = str(tmp_path / 'ckpt.pth')
    proc = subprocess.run([sys.executable, '-c', WRITE_FAILS, path],
                          env=subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert 'ERROR CheckpointSaveError' in proc.stdout, proc.stderr[-3000:]
    assert path in proc.stdout and 'needs about' in proc.stdout
    assert torch.equal(safe_torch_load(path)['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pth']  # no partial file left
