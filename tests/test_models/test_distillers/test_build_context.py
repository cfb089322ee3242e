"""What the distiller takes from the config it is built from: relative
teacher paths, the dummy input's size and top-level preset overrides."""
import math
import os
import os.path as osp

import pytest
from mmengine.config import Config
from toy_models import toy_cfg

from mmkd_channel.models import distill_build_context
from mmkd_channel.models.distillers.build_context import (
    MAX_CHECK_SIDE, input_size_from_config, min_input_side)
from mmkd_channel.registry import MODELS
from mmkd_channel.utils.mim import resolve_config_path

PRESET = """
distill = dict(
    f=dict(
        student='neck',
        connector=dict(type='ChannelWiseTransform'),
        loss=dict(type='FeatureL2Loss', loss_weight=1.0)))
"""
MAIN = """
_base_ = ['./preset.py']
{override}
model = dict(
    type='mmkd_channel.FeatureDistiller',
    student={student},
    teacher='./teachers/toy16.py',
    check_input_shape=(1, 3, 16, 16),
    distill=_base_.distill)
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / 'teachers').mkdir()
    (tmp_path / 'teachers' /
     'toy16.py').write_text(f'model = {toy_cfg(16)!r}\n')
    (tmp_path / 'preset.py').write_text(PRESET)
    return tmp_path


def build(path):
    cfg = Config.fromfile(str(path))
    with distill_build_context(cfg):
        return MODELS.build(cfg.model)


def write_main(folder, override='', name='main.py'):
    (folder / name).write_text(
        MAIN.format(override=override, student=repr(toy_cfg(8))))
    return folder / name


def test_relative_teacher_path_from_the_config_folder(folder, tmp_path_factory,
                                                      monkeypatch):
    path = write_main(folder)
    monkeypatch.chdir(tmp_path_factory.mktemp('elsewhere'))
    model = build(path)
    assert model.teacher.neck.conv.in_channels == 16


def test_missing_relative_path_prints_absolute_paths(folder, tmp_path_factory,
                                                     monkeypatch):
    path = write_main(folder)
    os.remove(folder / 'teachers' / 'toy16.py')
    cwd = tmp_path_factory.mktemp('cwd')
    monkeypatch.chdir(cwd)
    with pytest.raises(FileNotFoundError) as info:
        build(path)
    msg = str(info.value)
    assert repr(osp.join(str(folder), 'teachers', 'toy16.py')) in msg
    assert repr(osp.join(str(cwd), 'teachers', 'toy16.py')) in msg
    assert 'relative to the config file' in msg


def test_top_level_override_reaches_the_distiller(folder, monkeypatch):
    monkeypatch.chdir(folder)
    path = write_main(folder,
                      'distill = dict(f=dict(loss=dict(loss_weight=2.0)))')
    model = build(path)
    assert model.distill_pairs['f'].loss.loss_weight == 2.0
    # without the context (the model dict alone) it is the preset's
    cfg = Config.fromfile(str(path))
    assert MODELS.build(cfg.model).distill_pairs['f'].loss.loss_weight == 1.0


def test_override_through_model_in_a_child_config(folder):
    write_main(folder, 'distill = dict(f=dict(loss=dict(loss_weight=2.0)))')
    child = folder / 'child.py'
    child.write_text("_base_ = ['./main.py']\nmodel = dict(distill=dict(f="
                     'dict(loss=dict(loss_weight=3.0))))\n')
    assert build(child).distill_pairs['f'].loss.loss_weight == 3.0


def test_both_changed_differently_is_an_error(folder):
    write_main(folder, 'distill = dict(f=dict(loss=dict(loss_weight=2.0)))')
    child = folder / 'child.py'
    child.write_text(
        "_base_ = ['./main.py']\n"
        'distill = dict(f=dict(loss=dict(loss_weight=5.0)))\n'
        'model = dict(distill=dict(f=dict(loss=dict(loss_weight=3.0))))\n')
    with pytest.raises(
            ValueError,
            match='top-level `distill` of the config '
            'differs from `model.distill`'):
        build(child)


@pytest.mark.parametrize('path,size,where', [
    ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
     (800, 1333), 'Resize.scale'),
    ('mmpretrain::resnet/resnet50_8xb32_in1k.py',
     (224, 224), 'CenterCrop.crop_size'),
    ('mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
     (512, 1024), 'RandomCrop.crop_size'),
])
def test_dummy_size_from_the_pipeline(path, size, where):
    cfg = Config.fromfile(resolve_config_path(path))
    (h, w), source = input_size_from_config(cfg)
    scale = min(1.0, MAX_CHECK_SIDE / max(size))
    assert (h, w) == tuple(32 * math.ceil(v * scale / 32) for v in size)
    assert source.endswith(where)


def test_swin_needs_one_window_at_stride_32():
    from mmdet.models.backbones import SwinTransformer
    assert min_input_side(SwinTransformer(window_size=7)) == 7 * 32
    assert min_input_side(MODELS.build(toy_cfg(8))) == 0


def test_the_dumped_config_says_what_was_trained(folder, tmp_path):
    path = write_main(folder,
                      'distill = dict(f=dict(loss=dict(loss_weight=2.0)))')
    cfg = Config.fromfile(str(path))
    with distill_build_context(cfg):
        MODELS.build(cfg.model)
    assert cfg.model.distill.f.loss.loss_weight == 2.0
    # a dump (no bases any more) builds the same distiller
    dumped = tmp_path / 'dumped.py'
    cfg.dump(str(dumped))
    again = Config.fromfile(str(dumped))
    again.model.teacher = str(folder / 'teachers' / 'toy16.py')
    with distill_build_context(again):
        model = MODELS.build(again.model)
    assert model.distill_pairs['f'].loss.loss_weight == 2.0


def test_no_bases_and_a_changed_model_distill_uses_the_model(tmp_path):
    from unittest import mock

    from mmengine.logging import MMLogger
    cfg = Config(
        dict(
            distill=dict(
                f=dict(
                    student='neck',
                    connector=dict(type='ChannelWiseTransform'),
                    loss=dict(type='FeatureL2Loss', loss_weight=1.0))),
            model=dict(
                type='mmkd_channel.FeatureDistiller',
                student=toy_cfg(8),
                teacher=toy_cfg(16),
                check_input_shape=(1, 3, 16, 16))))
    cfg.model.distill = Config(cfg.to_dict()).distill
    cfg.model.distill.f.loss.loss_weight = 7.0  # e.g. a harness changed it
    logger = MMLogger.get_current_instance()
    with mock.patch.object(logger, 'warning') as warning, \
            distill_build_context(cfg):
        model = MODELS.build(cfg.model)
    assert model.distill_pairs['f'].loss.loss_weight == 7.0
    assert any('using `model.distill`' in str(c.args[0])
               for c in warning.call_args_list)


def test_top_level_override_of_a_scoped_preset(tmp_path):
    # MMEngine adds `_scope_='mmkd_channel'` to the dicts of a base named
    # `mmkd_channel::...`; a re-read of that base has none, and must still
    # count as the untouched preset.
    (tmp_path / 'teacher.py').write_text(f'model = {toy_cfg(16)!r}\n')
    path = tmp_path / 'scoped.py'
    path.write_text("_base_ = ['mmkd_channel::_base_/distill/cwt_fpn.py']\n"
                    'distill = dict(fpn=dict(loss=dict(loss_weight=2.0)))\n' +
                    MAIN.split('\n', 3)[3].replace(
                        './teachers/toy16.py', './teacher.py').format(
                            student=repr(toy_cfg(8))))
    assert build(path).distill_pairs['fpn'].loss.loss_weight == 2.0
