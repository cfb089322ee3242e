"""A checkpoint written by a host's own tools/train.py (plain MMEngine) is
a usable teacher, and the re-save tool makes it resumable."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmkd_toy import REPO, subprocess_env

from mmkd_channel.models.distillers import FeatureDistiller
from mmkd_channel.utils import UnsafeCheckpointError, safe_torch_load

RESAVE = 'tools/model_converters/resave_checkpoint.py'


def raw_weights(path: str) -> dict:
    """The checkpoint's state_dict through torch's own reader (the test's
    trusted file), allowing exactly what plain MMEngine pickles."""
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmkd_channel.utils.checkpoint import mmengine_safe_globals
    with torch.serialization.safe_globals(mmengine_safe_globals() +
                                          [getattr, HistoryBuffer]):
        return torch.load(path, weights_only=True)['state_dict']


def test_written_by_plain_mmengine(host_trained):
    """The fixture is what the issue is about: MMEngine pickled getattr."""
    found = torch.serialization.get_unsafe_globals_in_checkpoint(
        host_trained['checkpoint'])
    assert 'builtins.getattr' in found


def test_host_checkpoint_is_a_teacher(host_trained):
    host = dict(copy.deepcopy(host_trained['model']), _scope_='mmpretrain')
    model = FeatureDistiller(
        student=copy.deepcopy(host),
        teacher=host,
        teacher_ckpt=host_trained['checkpoint'],
        distill=dict(
            neck=dict(student='neck', loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 32, 32))
    expected = raw_weights(host_trained['checkpoint'])
    got = model.teacher.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def test_resume_refuses_and_names_the_tool(host_trained, tmp_path):
    with pytest.raises(UnsafeCheckpointError) as e:
        safe_torch_load(host_trained['checkpoint'])
    msg = str(e.value)
    assert 'builtins.getattr' in msg
    assert RESAVE in msg and host_trained['checkpoint'] in msg


def test_resave_then_resume(host_trained, tmp_path):
    out = str(tmp_path / 'safe.pth')
    proc = subprocess.run(
        [sys.executable, RESAVE, host_trained['checkpoint'], out],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'meta.cfg' in proc.stdout  # the config text was dropped
    ckpt = safe_torch_load(out)  # the strict reader accepts it
    assert 'cfg' not in ckpt['meta']
    for k, v in raw_weights(host_trained['checkpoint']).items():
        assert torch.equal(ckpt['state_dict'][k], v), k
    assert ckpt['optimizer']['state']  # training state kept
    assert 'train/loss' in ckpt['message_hub']['log_scalars']

    # and the host config resumes from it for one more epoch
    cfg = Config.fromfile(host_trained['cfg'])
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_epochs = 2
    cfg.resume, cfg.load_from = True, out
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2 and runner.epoch == 2
    assert osp.isfile(tmp_path / 'work' / 'epoch_2.pth')
