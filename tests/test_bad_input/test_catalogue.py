"""Catalogue of bad configs and files: each fails when the distiller is
built (or the config loaded), with the right error type and a message that
names the offending key.

The distiller is built through the registry, as the Runner builds it.
"""
import copy
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from toy_models import ToyClassifier, toy_cfg

from mmkd_channel.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def cwt(s_ch=8, t_ch=16, student='neck', **spec) -> dict:
    spec = dict(
        student=student,
        connector=dict(
            type='ChannelWiseTransform', in_channels=s_ch, out_channels=t_ch),
        loss=dict(type='FeatureL2Loss', loss_weight=1.0),
        **spec)
    return dict(fpn=spec)


def distiller_cfg(**kwargs) -> dict:
    cfg = dict(
        type='mmkd_channel.FeatureDistiller',
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=cwt(),
        check_input_shape=(1, 3, 16, 16))
    cfg.update(kwargs)
    return cfg


def with_spec(**changes) -> dict:
    distill = cwt()
    distill['fpn'].update(changes)
    return distiller_cfg(distill=distill)


def save_teacher_ckpt(path, width=16, truncate=False) -> str:
    torch.save({'state_dict': ToyClassifier(width=width).state_dict()}, path)
    if truncate:
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data[:len(data) // 2])
    return str(path)


def has_loss(name: str) -> bool:
    return name in MODELS.module_dict


def build_error(cfg: dict, error: type, *names: str) -> str:
    """Build ``cfg``; check the error type and that every name occurs."""
    with pytest.raises(error) as info:
        MODELS.build(copy.deepcopy(cfg))
    # KeyError.__str__ is the repr of its message: undo the escaping
    msg = str(info.value.args[0]).replace("\\'", "'").replace('\\"', '"')
    for name in names:
        assert name in msg, f'{name!r} not in: {msg}'
    return msg


CASES = {
    # --- module paths ---------------------------------------------------
    'wrong student module path':
    lambda tmp: (with_spec(student='nekc'), KeyError,
                 ["student module path 'nekc'", "'neck'"]),
    'wrong teacher module path':
    lambda tmp: (with_spec(teacher='backbone.9'), KeyError,
                 ["teacher module path 'backbone.9'", 'backbone.5']),
    'malformed module path':
    lambda tmp:
    (with_spec(student='neck:outptu'), ValueError, ["'neck:outptu'"]),
    # --- type names -----------------------------------------------------
    'wrong connector type':
    lambda tmp: (with_spec(
        connector=dict(
            type='ChannelWiseTransfrom', in_channels=8, out_channels=16)
    ), KeyError, ["distill['fpn'].connector", 'ChannelWiseTransfrom']),
    'wrong loss type':
    lambda tmp: (with_spec(loss=dict(type='FeatureL2Los')), KeyError,
                 ["distill['fpn'].loss", 'FeatureL2Los']),
    'wrong student model type':
    lambda tmp: (distiller_cfg(student=dict(type='ToyClasifier')), KeyError,
                 ['ToyClasifier']),
    'unknown key in a distill entry':
    lambda tmp:
    (with_spec(loss_cfg=None), KeyError, ["distill['fpn']", "'loss_cfg'"]),
    'distill entry without loss':
    lambda tmp: (with_spec(loss=None), KeyError, ["distill['fpn']", '`loss`']),
    # --- shapes ---------------------------------------------------------
    'channel mismatch (connector input)':
    lambda tmp: (distiller_cfg(distill=cwt(s_ch=4)), ValueError,
                 ["distill['fpn']", 'in_channels=4', "'neck' has 8 channels"]),
    'channel mismatch (connector output)':
    lambda tmp: (distiller_cfg(distill=cwt(t_ch=8)), ValueError,
                 ["distill['fpn']", 'out_channels=8', 'has 16 channels']),
    'spatial mismatch':
    lambda tmp: (distiller_cfg(
        teacher=toy_cfg(8),
        distill=dict(
            fpn=dict(
                student='backbone.2',
                teacher='backbone.5',
                loss=dict(type='FeatureL2Loss')))), ValueError, [
                    "distill['fpn']", "student 'backbone.2'",
                    "teacher 'backbone.5'", '(1, 8, 16, 16)', '(1, 8, 8, 8)'
                ]),
    'fewer connectors than feature levels':
    lambda tmp: (with_spec(connector=[
        dict(type='ChannelWiseTransform', in_channels=8, out_channels=16)
    ]), ValueError, ["distill['fpn']", '1 connectors for 2 feature levels']),
    # --- teacher config and checkpoint -----------------------------------
    'teacher config missing':
    lambda tmp:
    (distiller_cfg(teacher='configs/no_such_teacher.py'), FileNotFoundError,
     ['teacher', "'configs/no_such_teacher.py'"]),
    'teacher config missing in a package':
    lambda tmp:
    (distiller_cfg(teacher='mmdet::faster_rcnn/no_such.py'), FileNotFoundError,
     ['teacher', 'mmdet::faster_rcnn/no_such.py']),
    'teacher not given':
    lambda tmp: (distiller_cfg(teacher=None), TypeError, ['teacher must be']),
    'teacher checkpoint missing':
    lambda tmp: (distiller_cfg(teacher_ckpt=str(tmp / 'nope.pth')),
                 FileNotFoundError, ['teacher_ckpt', 'nope.pth']),
    'teacher checkpoint given as the teacher config':
    lambda tmp:
    (distiller_cfg(teacher=save_teacher_ckpt(tmp / 't.pth')), ValueError,
     ["teacher: '", "t.pth' is not a config file", '`teacher_ckpt`']),
    'student checkpoint given as the student config':
    lambda tmp:
    (distiller_cfg(student=save_teacher_ckpt(tmp / 's.pth')), ValueError, [
        "student: '", "s.pth' is not a config file",
        "init_cfg=dict(type='Pretrained'"
    ]),
    'teacher checkpoint is a work dir':
    lambda tmp: (distiller_cfg(
        teacher_ckpt=str((tmp / 'last_checkpoint').write_text(
            str(tmp / 'epoch_3.pth')) and tmp)), IsADirectoryError,
                 ['teacher_ckpt', 'is a directory', 'epoch_3.pth']),
    'teacher checkpoint truncated':
    lambda tmp: (distiller_cfg(
        teacher_ckpt=save_teacher_ckpt(tmp / 'cut.pth', truncate=True)),
                 RuntimeError, ['teacher_ckpt', 'cut.pth', 'truncated']),
    'teacher checkpoint not a checkpoint':
    lambda tmp: (distiller_cfg(
        teacher_ckpt=str(
            (tmp / 'notes.pth').write_text('hello') and tmp / 'notes.pth')),
                 RuntimeError, ['teacher_ckpt', 'notes.pth']),
    'teacher checkpoint of another architecture':
    lambda tmp:
    (distiller_cfg(teacher_ckpt=save_teacher_ckpt(tmp / 'w4.pth', width=4)
                   ), ValueError,
     ['teacher_ckpt', 'w4.pth', 'another architecture', 'other shapes']),
    'trainable teacher':
    lambda tmp: (distiller_cfg(teacher_trainable=True), NotImplementedError,
                 ['teacher_trainable']),
    # --- loss weights and temperatures --------------------------------
    'negative loss weight':
    lambda tmp: (with_spec(loss=dict(type='FeatureL2Loss', loss_weight=-1.0)),
                 ValueError, ["distill['fpn'].loss", 'loss_weight=-1.0']),
    'NaN loss weight':
    lambda tmp:
    (with_spec(loss=dict(type='FeatureL2Loss', loss_weight=float('nan'))),
     ValueError, ["distill['fpn'].loss", 'loss_weight=nan']),
    'tau = 0 (CWD)':
    lambda tmp: (with_spec(
        connector=None, loss=dict(type='ChannelWiseDivergence', tau=0.0)),
                 ValueError, ["distill['fpn'].loss", 'tau=0.0']),
    'tau < 0 (KD)':
    lambda tmp: (distiller_cfg(
        distill=dict(
            logits=dict(student='head', loss=dict(type='KDLoss', tau=-2.0)))),
                 ValueError, ["distill['logits'].loss", 'tau=-2.0']),
    'unknown key with a near name':
    lambda tmp:
    (with_spec(lost=None), KeyError, ["distill['fpn']", "'lost' -> 'loss'?"]),
    'module path not a string':
    lambda tmp: (with_spec(student=3), TypeError,
                 ["distill['fpn'].student", 'got 3 (int)']),
    # --- check_input_shape ----------------------------------------------
    'check_input_shape without the batch axis':
    lambda tmp: (distiller_cfg(check_input_shape=(3, 16, 16)), ValueError,
                 ['check_input_shape', '(N, C, H, W)', 'got (3, 16, 16)']),
    'check_input_shape negative side':
    lambda tmp: (distiller_cfg(check_input_shape=(1, 3, -16, 16)), ValueError,
                 ['check_input_shape', 'got (1, 3, -16, 16)']),
    'check_input_shape a number':
    lambda tmp: (distiller_cfg(check_input_shape=64), ValueError,
                 ['check_input_shape', 'got 64']),
    'check_input_shape too large to allocate':
    lambda tmp: (distiller_cfg(check_input_shape=(1, 3, 10**5, 10**5)),
                 ValueError, ['check_input_shape', '<= 4096']),
    # --- the distill list itself ----------------------------------------
    'distill list of paths':
    lambda tmp: (distiller_cfg(distill=['neck']), TypeError,
                 ['distill[0] must be a dict', "got 'neck'"]),
    'empty distill dict':
    lambda tmp:
    (distiller_cfg(distill={}), ValueError, ['`distill` is empty']),
    'empty distill list':
    lambda tmp:
    (distiller_cfg(distill=[]), ValueError, ['`distill` is empty']),
}

NEEDS = {'tau = 0 (CWD)': 'ChannelWiseDivergence', 'tau < 0 (KD)': 'KDLoss'}


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_config(case, tmp_path):
    if case in NEEDS and not has_loss(NEEDS[case]):
        pytest.skip(f'{NEEDS[case]} is not registered in this checkout')
    cfg, error, names = CASES[case](tmp_path)
    build_error(cfg, error, *names)


def test_catalogue_size():
    assert len(CASES) >= 12


def test_preset_on_a_host_model_it_does_not_fit():
    """The FPN preset (FPN levels at ``neck``) on an mmpretrain classifier,
    whose ``neck`` is global average pooling (512-d vectors)."""
    preset = Config.fromfile(
        osp.join(REPO, 'configs/_base_/distill/cwt_fpn.py'))
    cfg = distiller_cfg(
        student='mmpretrain::resnet/resnet18_8xb32_in1k.py',
        teacher='mmpretrain::resnet/resnet18_8xb32_in1k.py',
        distill=preset.distill.to_dict(),
        check_input_shape=(1, 3, 64, 64))
    msg = build_error(cfg, ValueError, "distill['fpn']", 'is pooled (N, C)',
                      "student='backbone.layer4'", "teacher='backbone.layer4'")
    assert re.search(r"student 'neck' \[\(1, 512\)\]", msg)


def test_wrong_python_module_in_custom_imports(tmp_path):
    path = tmp_path / 'bad_imports.py'
    path.write_text("custom_imports = dict(imports=['mmkd_chanel'], "
                    'allow_failed_imports=False)\n')
    with pytest.raises(ImportError, match='mmkd_chanel'):
        Config.fromfile(str(path))


def test_nan_check_names_the_term_at_the_first_step():
    """A NaN that appears only with real data is caught before backward."""
    model = MODELS.build(distiller_cfg(distill=cwt()))
    inputs = torch.rand(2, 3, 16, 16)
    inputs[0, 0, 0, 0] = math.nan
    with pytest.raises(FloatingPointError, match='loss_cls'):
        model(inputs, [0, 1], mode='loss')
