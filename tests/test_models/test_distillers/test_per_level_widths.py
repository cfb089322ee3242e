"""Necks whose levels have their own widths (YOLOv3's 512 / 256 / 128):
a width-free preset's one connector becomes one per level, and a list of
connectors maps level i to level i."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import nn
from toy_models import toy_cfg

from mmkd_channel.registry import MODELS


class Pyramid(nn.Module):

    def __init__(self, widths):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(3, w, 3, padding=1) for w in widths)

    def forward(self, x):
        return tuple(
            conv(F.avg_pool2d(x, 2**i)) for i, conv in enumerate(self.convs))


@MMENGINE_MODELS.register_module(force=True)
class ToyPyramidNet(BaseModel):

    def __init__(self, widths=(4, 4), data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.neck = Pyramid(widths)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.neck(inputs)
        out = sum(f.mean() for f in feats)
        return dict(loss_task=out) if mode == 'loss' else out


def build(s_widths, t_widths, connector=None):
    return MODELS.build(
        dict(
            type='mmkd_channel.FeatureDistiller',
            student=dict(type='ToyPyramidNet', widths=s_widths),
            teacher=dict(type='ToyPyramidNet', widths=t_widths),
            distill=dict(
                fpn=dict(
                    student='neck',
                    connector=connector or dict(type='ChannelWiseTransform'),
                    loss=dict(type='FeatureL2Loss'))),
            check_input_shape=(1, 3, 16, 16)))


def widths(conn):
    return [(c.in_channels, c.out_channels) for c in conn]


def test_width_free_connector_per_level():
    model = build((4, 4, 4), (32, 16, 8))
    conn = model.distill_pairs['fpn'].connector
    assert isinstance(conn, nn.ModuleList)
    assert widths(conn) == [(4, 32), (4, 16), (4, 8)]
    assert conn[0] is not conn[1]
    losses = model(torch.rand(2, 3, 16, 16), None, mode='loss')
    assert torch.isfinite(losses['loss_distill_fpn'])
    names = [n for n, _ in model.named_parameters() if 'distill_pairs' in n]
    assert any('connector.2.' in n for n in names)  # the optimizer sees all


def test_list_of_connectors_with_own_widths():
    cwt = [
        dict(type='ChannelWiseTransform', in_channels=s, out_channels=t)
        for s, t in ((4, 32), (6, 16))
    ]
    model = build((4, 6), (32, 16), connector=cwt)
    assert widths(model.distill_pairs['fpn'].connector) == [(4, 32), (6, 16)]


def test_same_widths_keep_one_shared_connector():
    model = build((4, 4), (8, 8))
    conn = model.distill_pairs['fpn'].connector
    assert not isinstance(conn, nn.ModuleList)
    assert (conn.in_channels, conn.out_channels) == (4, 8)


def test_toy_cfg_unchanged():
    """The toy FPN of the other tests (equal widths) still shares one."""
    model = MODELS.build(
        dict(
            type='mmkd_channel.FeatureDistiller',
            student=toy_cfg(8),
            teacher=toy_cfg(16),
            distill=dict(
                fpn=dict(
                    student='neck',
                    connector=dict(type='ChannelWiseTransform'),
                    loss=dict(type='FeatureL2Loss'))),
            check_input_shape=(1, 3, 16, 16)))
    assert not isinstance(model.distill_pairs['fpn'].connector, nn.ModuleList)
