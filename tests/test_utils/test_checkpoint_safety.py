"""A checkpoint whose pickle would run code is refused on every path, and
the code never runs."""
import builtins
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_checkpoint
from mmkd_toy import REPO, subprocess_env, toy_config, toy_distill_model

from mmkd_channel.models.distillers import FeatureDistiller
from mmkd_channel.utils import UnsafeCheckpointError, safe_torch_load


class SystemPayload:
    """Unpickling calls ``os.system('touch MARKER')``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class EvalPayload:
    """Unpickling calls ``builtins.eval`` on code that creates MARKER."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({self.marker!r}, 'w').close()", ))


PAYLOADS = {'posix.system': SystemPayload, 'builtins.eval': EvalPayload}


def make_evil(tmp_path, name: str) -> tuple:
    """(checkpoint path, marker path, pickled global) of a checkpoint that
    looks like a training checkpoint of the toy distiller."""
    marker = str(tmp_path / 'MARKER')
    path = str(tmp_path / 'evil.pth')
    from mmkd_toy import MMKDToyNet
    state = {f'student.{k}': v for k, v in MMKDToyNet().state_dict().items()}
    torch.save(
        dict(
            meta=dict(epoch=1, iter=4, payload=PAYLOADS[name](marker)),
            state_dict=state), path)
    return path, marker, name


@pytest.fixture(params=sorted(PAYLOADS))
def evil(request, tmp_path):
    return make_evil(tmp_path, request.param)


def refused(error, evil) -> None:
    path, marker, name = evil
    msg = str(error.value)
    assert name in msg and path in msg and 'could execute code' in msg
    assert not osp.exists(marker), 'the payload ran'


def test_payload_is_real(evil):
    """Positive control: an unrestricted load does run the payload."""
    path, marker, _ = evil
    torch.load(path, weights_only=False)
    assert osp.exists(marker)


def test_safe_torch_load(evil):
    with pytest.raises(UnsafeCheckpointError) as e:
        safe_torch_load(evil[0])
    refused(e, evil)


def test_mmengine_load_checkpoint(evil):
    """What host tools (init_detector, load_from ...) call."""
    from mmkd_toy import MMKDToyNet
    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint(MMKDToyNet(), evil[0])
    refused(e, evil)


def test_teacher_ckpt(evil):
    cfg = toy_distill_model(teacher_ckpt=evil[0])
    cfg.pop('type')
    with pytest.raises(UnsafeCheckpointError) as e:
        FeatureDistiller(**cfg)
    assert str(e.value).startswith('teacher_ckpt')
    refused(e, evil)


@pytest.mark.parametrize('resume', [True, False])
def test_resume_and_load_from(evil, tmp_path, resume):
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1, val=False)
    cfg.load_from, cfg.resume = evil[0], resume
    runner = Runner.from_cfg(cfg)
    with pytest.raises(UnsafeCheckpointError) as e:
        runner.train()
    refused(e, evil)
    assert runner.iter == 0


def test_export_tool(evil, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'export_student',
        osp.join(REPO, 'tools', 'model_converters', 'export_student.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(UnsafeCheckpointError) as e:
        tool.export_student(evil[0], str(tmp_path / 'out.pth'))
    refused(e, evil)
    assert not osp.exists(tmp_path / 'out.pth')


def test_tools_test_py(tmp_path):
    evil = make_evil(tmp_path, 'posix.system')  # one payload: a subprocess
    cfg = toy_config(str(tmp_path / 'work'))
    cfg.dump(str(tmp_path / 'toy.py'))
    proc = subprocess.run(
        [sys.executable, 'tools/test.py',
         str(tmp_path / 'toy.py'), evil[0]],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stderr
    assert evil[2] in proc.stderr
    assert not osp.exists(evil[1]), 'the payload ran'
