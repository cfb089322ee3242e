"""Host code that reaches into ``runner.model`` sees the student."""
import copy

import pytest
import torch
from toy_models import toy_cfg

from mmkd_channel.models import FeatureDistiller


@pytest.fixture(scope='module')
def model():
    return FeatureDistiller(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            f=dict(
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


def test_student_attributes_fall_through(model):
    assert model.head is model.student.head
    assert model.backbone is model.student.backbone
    model.neck.flag = True  # hooks set attributes on what they get
    assert model.student.neck.flag is True
    assert hasattr(model, 'head') and not hasattr(model, 'bbox_head')


def test_the_distiller_own_attributes_come_first(model):
    # a submodule, a class attribute and a method of the distiller
    assert isinstance(model.distill_pairs, torch.nn.ModuleDict)
    assert model.distill_enabled is True
    assert model.forward.__self__ is model
    # the student's data_preprocessor is shared, not looked up twice
    assert model.data_preprocessor is model.student.data_preprocessor
    assert model.teacher is not model.student


def test_missing_everywhere_names_both(model):
    with pytest.raises(
            AttributeError,
            match="no attribute 'bbox_head', and neither has "
            r'its student \(ToyClassifier\)'):
        model.bbox_head


def test_deepcopy_as_ema_hooks_do(model):
    twin = copy.deepcopy(model)
    assert twin.head is twin.student.head and twin.head is not model.head
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(twin(x), model(x))
