"""Host pairs whose preset cannot fit: the error, raised when the
distiller is built, names the key, what the backbone offers and the fix."""
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

from mmkd_channel.models.distillers import DistillCheckError
from mmkd_channel.models.ofd import resolve_stage_path
from mmkd_channel.testing.tiny_configs import tiny_config

REFUSED = osp.join(osp.dirname(osp.abspath(__file__)), 'configs', 'refused')


def test_hrnet_has_no_last_stage_and_the_error_says_what_to_distill(
        tiny_datasets, tmp_path):
    cfg = Config.fromfile(
        osp.join(REFUSED, 'fcn_hr48-hr18s_cwt-last-stage.py'))
    tiny_config(cfg, tiny_datasets, str(tmp_path))
    with pytest.raises(DistillCheckError) as info:
        Runner.from_cfg(cfg)
    msg = str(info.value)
    for role in ('student', 'teacher'):
        assert re.search(
            r"distill\['last_stage'\]: " + role +
            r" module path 'backbone.stage\(-1\)': .*backbone HRNet", msg)
    # the backbone's real children, not another family's 'layer4'
    assert "'backbone.stage4'" in msg and "'backbone.layer4'" not in msg
    assert "'decode_head.conv_seg' in a segmentor" in msg


def test_traced_stages_are_the_returned_maps_and_the_error_says_so():
    from mmpretrain.models import ShuffleNetV2
    model = nn.Module()
    model.backbone = ShuffleNetV2()  # out_indices=(3, ): one map
    assert resolve_stage_path(model, 'backbone.stage(-1)') == \
        'backbone.layers.3'
    with pytest.raises(
            IndexError,
            match=r'out_indices=\(3,\).*set '
            r'out_indices=\(0, 1, 2, 3\)'):
        resolve_stage_path(model, 'backbone.stage(-2)')
    model.backbone = ShuffleNetV2(out_indices=(0, 1, 2, 3))
    assert resolve_stage_path(model, 'backbone.stage(-2)') == \
        'backbone.layers.2'
