"""A checkpoint whose pickle would run code: the code never runs. Its
weights load wherever only weights are needed; --resume refuses it."""
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
from mmkd_channel.utils import (UnsafeCheckpointError, restricted_torch_load,
                                safe_torch_load)
from mmkd_channel.utils.restricted_pickle import Inert


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
    torch.save(state, str(tmp_path / 'weights.pth'))  # clean, for checks
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
    assert 'tools/model_converters/resave_checkpoint.py' in msg
    assert not osp.exists(marker), 'the payload ran'


def student_weights(evil_path) -> dict:
    """The weights stored in the evil checkpoint (from a clean copy)."""
    return torch.load(
        osp.join(osp.dirname(evil_path), 'weights.pth'), weights_only=True)


def test_payload_is_real(evil):
    """Positive control: an unrestricted load does run the payload."""
    path, marker, _ = evil
    torch.load(path, weights_only=False)
    assert osp.exists(marker)


def test_strict_reader_refuses(evil):
    """What --resume uses."""
    with pytest.raises(UnsafeCheckpointError) as e:
        safe_torch_load(evil[0])
    refused(e, evil)


def test_restricted_reader_loads_the_weights(evil):
    path, marker, name = evil
    ckpt = restricted_torch_load(path)
    assert not osp.exists(marker), 'the payload ran'
    assert isinstance(ckpt['meta']['payload'], Inert)
    assert name in repr(ckpt['meta']['payload'])
    sd = student_weights(path)
    assert ckpt['state_dict'].keys() == sd.keys()
    for k in sd:
        assert torch.equal(ckpt['state_dict'][k], sd[k])


def test_mmengine_load_checkpoint(evil):
    """What host tools (init_detector, Pretrained init ...) call."""
    from mmkd_toy import MMKDToyNet
    model = MMKDToyNet()
    load_checkpoint(model, evil[0], revise_keys=[(r'^student\.', '')])
    assert not osp.exists(evil[1]), 'the payload ran'
    sd = student_weights(evil[0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[f'student.{k}']), k


def test_teacher_ckpt(evil, tmp_path):
    from mmkd_toy import MMKDToyNet
    teacher = MMKDToyNet(width=16)
    path = str(tmp_path / 'teacher.pth')
    torch.save(
        dict(
            meta=dict(payload=PAYLOADS[evil[2]](evil[1])),
            state_dict=teacher.state_dict()), path)
    cfg = toy_distill_model(teacher_ckpt=path)
    cfg.pop('type')
    distiller = FeatureDistiller(**cfg)
    assert not osp.exists(evil[1]), 'the payload ran'
    for k, v in teacher.state_dict().items():
        assert torch.equal(distiller.teacher.state_dict()[k], v), k


def test_resume_refused_load_from_loads(evil, tmp_path):
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1, val=False)
    cfg.load_from, cfg.resume = evil[0], True
    runner = Runner.from_cfg(cfg)
    with pytest.raises(UnsafeCheckpointError) as e:
        runner.train()
    refused(e, evil)
    assert runner.iter == 0

    cfg.resume = False
    cfg.work_dir = str(tmp_path / 'work2')
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    assert not osp.exists(evil[1]), 'the payload ran'
    sd = runner.model.state_dict()
    for k, v in student_weights(evil[0]).items():
        assert torch.equal(sd[k], v), k


def test_export_tool(evil, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'export_student',
        osp.join(REPO, 'tools', 'model_converters', 'export_student.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg_path = str(tmp_path / 'toy.py')
    toy_config(str(tmp_path / 'work')).dump(cfg_path)
    tool.export_student(evil[0], str(tmp_path / 'out.pth'), config=cfg_path)
    assert not osp.exists(evil[1]), 'the payload ran'
    out = safe_torch_load(str(tmp_path / 'out.pth'))  # a clean file
    for k, v in student_weights(evil[0]).items():
        assert torch.equal(out['state_dict'][k[len('student.'):]], v), k


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
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'replaced by inert placeholders' in proc.stdout + proc.stderr
    assert 'accuracy' in proc.stdout + proc.stderr
    assert not osp.exists(evil[1]), 'the payload ran'
