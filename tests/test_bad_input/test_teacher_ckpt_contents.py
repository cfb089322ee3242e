"""``teacher_ckpt`` written by another run: the teacher's weights are found
under the run's prefix, and weights no teacher should have are refused at
build time with the key and the fix.
"""
import math

import pytest
import torch
from toy_models import ToyClassifier, toy_cfg

from mmkd_channel.registry import MODELS


def distiller_cfg(teacher_ckpt, width=16) -> dict:
    return dict(
        type='mmkd_channel.FeatureDistiller',
        student=toy_cfg(8),
        teacher=toy_cfg(width),
        teacher_ckpt=teacher_ckpt,
        distill=dict(
            fpn=dict(
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


def save(path, obj) -> str:
    torch.save(obj, str(path))
    return str(path)


def assert_loaded(model, state_dict):
    own = model.teacher.state_dict()
    assert set(own) == set(state_dict)
    for k, v in state_dict.items():
        assert torch.equal(own[k], v.to(own[k].dtype)), k


def prefixed(prefix, state_dict) -> dict:
    return {prefix + k: v for k, v in state_dict.items()}


def test_a_distillation_runs_checkpoint_gives_its_student(tmp_path):
    """Our own run (student 16 wide, its teacher 32) as the next teacher."""
    run = MODELS.build(
        distiller_cfg(None, width=32) | dict(student=toy_cfg(16)))
    ckpt = save(tmp_path / 'epoch_1.pth', dict(state_dict=run.state_dict()))
    model = MODELS.build(distiller_cfg(ckpt))
    assert_loaded(model, run.student.state_dict())


def test_self_distillation_checkpoint_takes_the_student(tmp_path):
    """Both models of the run fit the teacher: the trained one is taken."""
    student = ToyClassifier(width=16).state_dict()
    teacher = ToyClassifier(width=16).state_dict()
    ckpt = save(
        tmp_path / 'self.pth',
        dict(
            state_dict=prefixed('teacher.', teacher)
            | prefixed('student.', student)))
    assert_loaded(MODELS.build(distiller_cfg(ckpt)), student)


def test_mmrazor_checkpoint(tmp_path):
    """MMRazor's SingleTeacherDistill: ``architecture.`` is the student,
    ``teacher.`` its teacher, ``distiller.`` the connectors; under DDP."""
    arch = ToyClassifier(width=16).state_dict()
    sd = prefixed('module.architecture.', arch) | prefixed(
        'module.teacher.',
        ToyClassifier(width=16).state_dict())
    sd['module.distiller.connectors.c.weight'] = torch.ones(3)
    ckpt = save(tmp_path / 'razor.pth', dict(state_dict=sd, meta={}))
    assert_loaded(MODELS.build(distiller_cfg(ckpt)), arch)


def test_fp16_weights(tmp_path):
    sd = ToyClassifier(width=16).state_dict()
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    model = MODELS.build(distiller_cfg(save(tmp_path / 'h.pth', half)))
    assert_loaded(model, half)
    assert model.teacher.head.weight.dtype == torch.float32


@pytest.mark.parametrize('value', [math.nan, math.inf])
def test_non_finite_teacher_weights(tmp_path, value):
    sd = ToyClassifier(width=16).state_dict()
    sd['neck.conv.weight'][0, 0, 0, 0] = value
    ckpt = save(tmp_path / 'diverged.pth', dict(state_dict=sd))
    with pytest.raises(ValueError) as info:
        MODELS.build(distiller_cfg(ckpt))
    msg = str(info.value)
    assert 'teacher_ckpt' in msg and 'diverged.pth' in msg
    assert "['neck.conv.weight']" in msg and 'NaN or Inf' in msg


def test_values_that_are_not_tensors(tmp_path):
    sd = {k: 0.5 for k in ToyClassifier(width=16).state_dict()}
    ckpt = save(tmp_path / 'floats.pth', dict(state_dict=sd))
    with pytest.raises(
            ValueError,
            match=r"teacher_ckpt .*floats.pth.* no tensors .*"
            r"'backbone.0.weight': float"):
        MODELS.build(distiller_cfg(ckpt))


def test_no_prefix_fits_still_names_the_keys(tmp_path):
    sd = prefixed('architecture.', ToyClassifier(width=4).state_dict())
    ckpt = save(tmp_path / 'w4.pth', sd)
    with pytest.raises(ValueError, match='does not fit the teacher'):
        MODELS.build(distiller_cfg(ckpt))
