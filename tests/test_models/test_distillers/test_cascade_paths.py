"""A preset written for one head (``decode_head.conv_seg``) fits cascades,
whose heads sit in a ``ModuleList`` and whose last head predicts (mmseg's
OCRNet, mmdet's Cascade R-CNN)."""
import pytest
from torch import nn

from mmkd_channel.models.distillers.recorder import through_last_stage


class Head(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv_seg = nn.Conv2d(4, 2, 1)
        self.relu = nn.ReLU()


def cascade(n=2) -> nn.Module:
    model = nn.Module()
    model.decode_head = nn.ModuleList([Head() for _ in range(n)])
    return model


@pytest.mark.parametrize('n', [2, 3])
def test_the_last_head(n):
    last = n - 1
    assert through_last_stage(cascade(n), 'decode_head.conv_seg') == \
        f'decode_head.{last}.conv_seg'
    assert through_last_stage(cascade(n), 'decode_head.relu:input#-1') == \
        f'decode_head.{last}.relu:input#-1'


class PointHead(nn.Module):
    """A last head that refines sampled points: no ``conv_seg``."""

    def __init__(self):
        super().__init__()
        self.fc_seg = nn.Conv1d(4, 2, 1)


def test_the_last_head_that_has_the_module():
    """PointRend: the logit map is the coarse head's, before the point
    head."""
    model = cascade(2)
    model.decode_head.append(PointHead())
    # an earlier head runs again in training: its first call is meant
    assert through_last_stage(model, 'decode_head.conv_seg') == \
        'decode_head.1.conv_seg#0'
    assert through_last_stage(model, 'decode_head.relu:input#-1') == \
        'decode_head.1.relu:input#-1'
    assert through_last_stage(model, 'decode_head.fc_seg') == \
        'decode_head.2.fc_seg'


def test_a_first_call_index_stops_at_that_call():
    """``#0`` is complete once recorded: a teacher stops there even when
    the owner's hooks never fire (mmseg calls ``head.forward`` directly)."""
    import torch

    from mmkd_channel.models.distillers.recorder import FeatureRecorder
    model = cascade(2)
    calls = []

    def run(x):
        calls.append(0)
        model.decode_head[0].conv_seg(x)
        calls.append(1)
        model.decode_head[0].conv_seg(x)

    rec = FeatureRecorder(model, ['decode_head.0.conv_seg#0'])
    with rec.record(stop_after={}) as out:
        run(torch.rand(1, 4, 2, 2))
    assert calls == [0]
    assert out['decode_head.0.conv_seg#0'].shape == (1, 2, 2, 2)


def test_existing_and_impossible_paths_unchanged():
    model = cascade()
    for spec in ('decode_head.0.conv_seg', 'decode_head', 'decode_head.x',
                 'neck.conv_seg', 'decode_head.conv_seg.x'):
        assert through_last_stage(model, spec) == spec
    single = nn.Module()
    single.decode_head = Head()
    assert through_last_stage(single, 'decode_head.conv_seg') == \
        'decode_head.conv_seg'


def test_distiller_resolves_and_says_so():
    """End to end on mmseg's CascadeEncoderDecoder (OCRNet's heads on a
    small ResNet), with the CWD logits preset's path."""
    from mmengine.logging import MMLogger

    from mmkd_channel.registry import MODELS
    norm = dict(type='BN', requires_grad=True)
    heads = [
        dict(
            type='FCNHead',
            in_channels=512,
            in_index=0,
            channels=8,
            num_convs=1,
            concat_input=False,
            num_classes=3,
            norm_cfg=norm),
        dict(
            type='OCRHead',
            in_channels=512,
            in_index=0,
            channels=8,
            ocr_channels=4,
            num_classes=3,
            norm_cfg=norm)
    ]
    host = dict(
        _scope_='mmseg',
        type='CascadeEncoderDecoder',
        num_stages=2,
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(
            type='ResNetV1c', depth=18, out_indices=(3, ), norm_cfg=norm),
        decode_head=heads,
        test_cfg=dict(mode='whole'))
    logger = MMLogger.get_current_instance()
    seen = []
    logger.info = lambda msg, *a, **k: seen.append(msg)
    try:
        model = MODELS.build(
            dict(
                type='mmkd_channel.FeatureDistiller',
                student=host,
                teacher=host,
                distill=dict(
                    logits=dict(
                        student='decode_head.conv_seg',
                        loss=dict(type='ChannelWiseDivergence'))),
                check_input_shape=(1, 3, 32, 32)))
    finally:
        del logger.info
    pair = model.distill_pairs['logits']
    assert pair.student_path == pair.teacher_path == 'decode_head.1.conv_seg'
    assert model._checked
    assert any("'decode_head.1.conv_seg', in the last head" in m for m in seen)
