"""Recorded modules whose outputs are not features: one clear error at
build time, not a ``TypeError`` from deep inside the check.

Swin's stages (mmpretrain and mmdet) return ``(tokens, (H, W))``; a user
who names ``'backbone.stages.3'`` gets the pair, the side, what the module
returned and the fix.
"""
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import nn

from mmkd_channel.models.distillers.pair_check import DistillCheckError
from mmkd_channel.registry import MODELS


class TokenStage(nn.Module):
    """Like Swin's ``SwinBlockSequence``: tokens and their grid."""

    def __init__(self, width):
        super().__init__()
        self.proj = nn.Conv2d(3, width, 4, stride=4)

    def forward(self, x):
        y = self.proj(x)
        return y.flatten(2).transpose(1, 2), tuple(y.shape[-2:])


@MMENGINE_MODELS.register_module(force=True)
class ToyTokenNet(BaseModel):

    def __init__(self, width=8, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.stage = TokenStage(width)
        self.head = nn.Linear(width, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        tokens, _ = self.stage(inputs)
        logits = self.head(tokens.mean(1))
        if mode == 'loss':
            return dict(loss_cls=logits.logsumexp(1).mean())
        return logits


def distiller(student_path, teacher_path, teacher=None) -> dict:
    return dict(
        type='mmkd_channel.FeatureDistiller',
        student=dict(type='ToyTokenNet', width=8),
        teacher=teacher or dict(type='ToyTokenNet', width=16),
        distill=dict(
            s=dict(
                student=student_path,
                teacher=teacher_path,
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


def test_tokens_and_grid_named_with_the_fix():
    with pytest.raises(DistillCheckError) as info:
        MODELS.build(distiller('stage', 'stage'))
    msg = str(info.value)
    assert "distill['s']: student 'stage' returns" in msg
    assert 'Tensor(1, 16, 8), (4, 4))' in msg
    assert 'not a feature' in msg and 'Fix:' in msg
    assert '1 problem(s)' in msg  # the teacher side is not reported twice


def test_teacher_side_alone():
    """Student side fine (a conv's map), teacher side tokens."""
    with pytest.raises(DistillCheckError) as info:
        MODELS.build(distiller('stage.proj', 'stage'))
    msg = str(info.value)
    assert "teacher 'stage' returns (Tensor(1, 16, 16), (4, 4))" in msg
    assert "student 'stage.proj'" not in msg


def test_feature_paths_still_build():
    model = MODELS.build(distiller('stage.proj', 'stage.proj'))
    assert model._checked
    assert model.distill_pairs['s'].connector.is_built


def test_at_the_first_step_when_the_build_check_is_off():
    cfg = distiller('stage', 'stage')
    cfg['check_input_shape'] = None
    cfg['distill']['s']['connector'] = dict(
        type='ChannelWiseTransform', in_channels=8, out_channels=16)
    model = MODELS.build(cfg)
    with pytest.raises(DistillCheckError, match="student 'stage' returns"):
        model(torch.rand(2, 3, 16, 16), [0, 1], mode='loss')


def test_one_map_against_fpn_levels_names_the_matching_level():
    """CenterNet's one-map neck against an FPN teacher: the hint is about
    levels (and which teacher level has the student's size), not a resize
    that cannot turn one level into five."""
    from toy_models import toy_cfg
    cfg = dict(
        type='mmkd_channel.FeatureDistiller',
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            fpn=dict(
                student='backbone',
                teacher='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))
    with pytest.raises(DistillCheckError) as info:
        MODELS.build(cfg)
    msg = str(info.value)
    assert 'different numbers of levels (student 1, teacher 2)' in msg
    assert "the teacher's level 0 has the other side's size 8x8" in msg
    assert 'Only the spatial size differs' not in msg
