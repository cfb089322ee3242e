"""Host code that reaches into ``runner.model`` sees the student."""
import copy

import pytest
import torch
from toy_models import toy_cwt_distiller

from mmkd_channel.models import FeatureDistiller


@pytest.fixture(scope='module')
def model():
    return toy_cwt_distiller()


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


def test_mmpretrain_adaptive_margins_hook_reaches_the_student_head():
    """mmpretrain's SetAdaptiveMarginsHook checks ``model.head`` and sets
    its margins, on the distiller as on the student."""
    from types import SimpleNamespace

    import numpy as np
    from mmengine.registry import DefaultScope
    from mmpretrain.engine.hooks import SetAdaptiveMarginsHook

    def classifier(head):
        return dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(type='ResNet', depth=18),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(in_channels=512, num_classes=4, **head))

    # as in an mmpretrain config (an earlier test may leave mmdet's scope)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = FeatureDistiller(
            student=classifier(dict(type='ArcFaceClsHead')),
            teacher=classifier(dict(type='LinearClsHead')),
            distill=dict(
                f=dict(
                    student='backbone.stage(-1)',
                    connector=dict(type='ChannelWiseTransform'),
                    loss=dict(type='FeatureL2Loss'))),
            check_input_shape=(1, 3, 64, 64))
    labels = np.array([0, 1, 1, 2, 3, 3, 3, 3])
    runner = SimpleNamespace(
        model=model,
        train_dataloader=SimpleNamespace(
            dataset=SimpleNamespace(get_gt_labels=lambda: labels)))
    before = model.student.head.margins.clone()
    SetAdaptiveMarginsHook().before_train(runner)
    margins = model.student.head.margins
    assert not torch.equal(before, margins)
    # rarer classes get larger margins: class 0 (1 image) > class 3 (4)
    assert margins[0] > margins[3]
