"""A config whose teacher and student disagree on a distilled feature fails
when it is built, naming the module paths and both shapes."""
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmkd_channel.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = ('configs/cwt/cwt_last-stage_pspnet_r101-d8_pspnet_r18-d8_'
          '4xb2-80k_cityscapes-512x1024.py')


def build_with(distill: dict):
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    cfg.model.teacher_ckpt = None
    cfg.model.distill = distill
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_channels_differ_without_connector():
    # PSPNet R18-D8 layer4: 512 ch, R101-D8 layer4: 2048 ch, both 1/8 of
    # the 64x64 build-time check input
    with pytest.raises(ValueError) as info:
        build_with(
            dict(
                last_stage=dict(
                    student='backbone.layer4', loss=dict(
                        type='FeatureL2Loss'))))
    msg = str(info.value)
    assert re.search(r"student 'backbone\.layer4' \[\(1, 512, 8, 8\)\]", msg)
    assert re.search(r"teacher 'backbone\.layer4' \[\(1, 2048, 8, 8\)\]", msg)


def test_spatial_sizes_differ():
    # the connector bridges the channels, not the 1/4 vs 1/8 resolution
    with pytest.raises(ValueError) as info:
        build_with(
            dict(
                early=dict(
                    student='backbone.layer1',
                    teacher='backbone.layer4',
                    connector=dict(
                        type='ChannelWiseTransform',
                        in_channels=64,
                        out_channels=2048),
                    loss=dict(type='FeatureL2Loss'))))
    msg = str(info.value)
    assert "student 'backbone.layer1' [(1, 64, 16, 16)]" in msg
    assert "teacher 'backbone.layer4' [(1, 2048, 8, 8)]" in msg
