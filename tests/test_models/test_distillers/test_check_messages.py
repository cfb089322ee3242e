"""One build-time error lists every problem, each with its fix."""
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn
from toy_models import toy_cfg

from mmkd_channel.models import DistillCheckError, FeatureDistiller


@MODELS.register_module(force=True)
class PoolingToy(BaseModel):
    """A conv stem, a module that pools inside, a head; and a module that
    returns a one-element tuple, as mmpretrain backbones do."""

    def __init__(self, width=8, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.pooled = nn.Sequential(
            nn.Conv2d(width, width, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten())
        self.head = nn.Module()
        self.head.layers = nn.Module()
        self.head.layers.head = nn.Linear(width, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.stem(inputs)
        return self.head.layers.head(self.pooled(x))


def make(distill, student=None, teacher=None):
    return FeatureDistiller(
        student=student or toy_cfg(8),
        teacher=teacher or toy_cfg(16),
        distill=distill,
        check_input_shape=(1, 3, 16, 16))


def error(**kwargs) -> str:
    with pytest.raises(DistillCheckError) as info:
        make(**kwargs)
    return str(info.value)


def l2(student, teacher=None, connector=None):
    spec = dict(student=student, loss=dict(type='FeatureL2Loss'))
    if teacher:
        spec['teacher'] = teacher
    if connector:
        spec['connector'] = connector
    return spec


def test_every_pair_and_side_in_one_message():
    msg = error(
        distill=dict(
            a=l2('nekc', 'bakbone.9'),
            b=l2('neck'),  # 8 vs 16 channels, no connector
            c=l2(
                'neck',
                connector=dict(
                    type='ChannelWiseTransform',
                    in_channels=4,
                    out_channels=16)),
            d=l2(
                'neck',
                connector=dict(
                    type='ChannelWiseTransform',
                    in_channels=8,
                    out_channels=12))))
    assert msg.startswith('FeatureDistiller: 5 problem(s) with `distill`')
    for part in ("  1. distill['a']: student module path 'nekc'",
                 "  2. distill['a']: teacher module path 'bakbone.9'",
                 "Fix: give an existing teacher path (the student path of "
                 "this pair is 'nekc')",
                 "distill['b']: student 'neck' [(1, 8, 8, 8), (1, 8, 4, 4)]"
                 ", teacher 'neck' [(1, 16, 8, 8), (1, 16, 4, 4)]",
                 "Fix: add a connector", "distill['c']", 'in_channels=4',
                 "'neck' has 8 channels", 'Fix: set in_channels=8',
                 "distill['d']", "out_channels=12 but the teacher feature "
                 "'neck' has 16 channels", 'Fix: set out_channels=16'):
        assert part in msg, part
    # it is still a KeyError (paths) and a ValueError (shapes)
    assert isinstance(DistillCheckError('x'), KeyError)
    assert isinstance(DistillCheckError('x'), ValueError)


def test_pooled_next_to_spatial_names_the_last_spatial_module():
    msg = error(
        distill=dict(
            p=l2(
                'pooled',
                'backbone.5',
                connector=dict(type='ChannelWiseTransform'))),
        student=dict(type='PoolingToy'))
    assert "distill['p']: student 'pooled' [(1, 8)]" in msg
    assert "teacher 'backbone.5' [(1, 16, 8, 8)]" in msg
    assert 'is pooled (N, C)' in msg
    assert "student='pooled.1'" in msg  # the ReLU: last spatial output


def test_leaf_suggestions_and_parent_submodules():
    msg = error(
        distill=dict(logits=l2('head.fc', 'head')),
        student=dict(type='PoolingToy'))
    assert "student module path 'head.fc'" in msg
    near = msg[msg.index('Nearest existing paths'):]
    assert 'head.layers.head' in near.split(';')[0]
    assert ("submodules of 'head': ['head.layers', 'head.layers.head']" in msg)


def test_one_element_tuple_next_to_a_tensor_is_unwrapped():
    model = make(dict(t=l2('backbone.5')), teacher=toy_cfg(8))
    pair = model.distill_pairs['t']
    x = torch.rand(1, 8, 4, 4)
    y = torch.rand(1, 8, 4, 4)
    want = ((x - y)**2).mean()
    torch.testing.assert_close(pair((x, ), y), want)
    torch.testing.assert_close(pair(x, (y, )), want)
    with pytest.raises(ValueError, match='tuple'):
        pair((x, x), y)  # two levels next to a tensor stay an error


def test_no_check_when_the_models_cannot_run_warns():
    from unittest import mock

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    # a 1 x 1 input is too small for the toy's stride and pooling
    with mock.patch.object(logger, 'warning') as warning:
        model = FeatureDistiller(
            student=toy_cfg(8),
            teacher=toy_cfg(16),
            distill=dict(
                f=l2(
                    'neck',
                    connector=dict(
                        type='ChannelWiseTransform',
                        in_channels=8,
                        out_channels=16))),
            check_input_shape=(1, 3, 1, 1))
    text = ' '.join(str(c.args[0]) for c in warning.call_args_list)
    assert not model._checked
    assert 'no build-time check' in text and '(1, 3, 1, 1)' in text
    assert 'check_input_shape=(1, 3, H, W)' in text
