"""The mmkd_channel scope is reachable the ways host configs use it."""
import os.path as osp

from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope, init_default_scope

import mmkd_channel
from mmkd_channel.registry import MODELS
from mmkd_channel.utils import resolve_config_path


def test_child_of_root_with_scope_and_locations():
    assert MODELS.parent is ROOT_MODELS
    assert MODELS.scope == 'mmkd_channel'
    assert 'mmkd_channel.models' in MODELS._locations
    assert ROOT_MODELS._search_child('mmkd_channel') is MODELS


def test_reached_from_mmdet_scope_by_prefix_and_scope_key():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS as DET_MODELS
    cfg = dict(
        type='mmkd_channel.ChannelWiseTransform',
        in_channels=2,
        out_channels=3)
    assert type(DET_MODELS.build(cfg)).__name__ == 'ChannelWiseTransform'
    cfg = dict(type='FeatureL2Loss', _scope_='mmkd_channel')
    assert type(DET_MODELS.build(cfg)).__name__ == 'FeatureL2Loss'
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'


def test_custom_imports(tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text("custom_imports = dict(imports=['mmkd_channel'], "
                    'allow_failed_imports=False)\nx = 1\n')
    assert Config.fromfile(str(path)).x == 1


def test_package_configs_reachable_with_double_colon(repo_root, tmp_path):
    rel = 'cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py'
    full = resolve_config_path(f'mmkd_channel::{rel}')
    assert osp.samefile(full, osp.join(repo_root, 'configs', rel))
    path = tmp_path / 'child.py'
    path.write_text(f"_base_ = ['mmkd_channel::{rel}']\n"
                    'train_cfg = dict(max_epochs=1)\n')
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'mmkd_channel.FeatureDistiller'
    assert cfg.train_cfg.max_epochs == 1
    assert mmkd_channel.__version__


def test_mmengine_hub_get_config():
    from mmengine.hub import get_config
    cfg = get_config(
        'mmkd_channel::cwt/'
        'cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py')
    assert cfg.model.type == 'mmkd_channel.FeatureDistiller'
