"""bf16 + channels-last teachers of the three hosts record the features of
their fp32 selves, within a stated tolerance.

The converted teacher is frozen and outside the distiller's parameters,
and its features carry no graph back into it (the toy tests check, in
fp32, bf16 and fp16, that a backward pass leaves every teacher ``.grad``
``None``).

Each teacher is built from the host's own ``.mim`` config (Faster R-CNN
R101-FPN, PSPNet R101-D8, ResNet-50) with random weights and random BN
statistics and saved as a checkpoint; the fp32 reference is that teacher
recorded as the default distiller records it, the other is a distiller of
a shipped config loading the checkpoint with ``teacher_dtype='bf16'`` and
``teacher_channels_last=True``. Small input (2 x 3 x 64 x 64).

Tolerance: the relative error ``||f_bf16 - f_fp32|| / ||f_fp32||`` of
every recorded feature tensor is below :data:`RTOL` (2e-2). bf16 keeps 8
significant bits (unit roundoff 2**-9 = 2e-3); over the 100+ layers of an
R101 the roundings add up. Measured (``pytest -s`` prints them): 6.4e-3
to 7.3e-3 on the five FPN levels, 4.9e-3 on the PSPNet logits, 4.1e-3 on
the ResNet-50 last stage.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from mmkd_channel.models import FeatureRecorder, build_host_model
from mmkd_channel.models.losses.base import as_tensor_list
from mmkd_channel.testing.tiny_configs import (host_models, no_pretrained,
                                               replace_sync_bn)

RTOL = 2e-2
CONFIGS = {
    'mmdet':
    'configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py',
    'mmseg':
    'configs/cwd/'
    'cwd_logits_pspnet_r101-d8_pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'mmpretrain':
    'configs/cwt/cwt_last-stage_resnet50_mobilenet-v1_8xb32-100e_in1k.py',
}
SHAPE = (2, 3, 64, 64)
MEASURED = {}  # host -> relative errors (printed with pytest -s)


def random_bn_(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)


def load_model_cfg(repo_root: str, config: str, ckpt: str) -> dict:
    cfg = Config.fromfile(osp.join(repo_root, config))
    for m in host_models(cfg):
        no_pretrained(m)
        replace_sync_bn(m)
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = copy.deepcopy(cfg.model)
    model.teacher_ckpt = ckpt
    model.check_input_shape = (1, ) + SHAPE[1:]
    return model


@pytest.mark.parametrize('host', list(CONFIGS))
def test_bf16_teacher_features_match_fp32(host, repo_root, tmp_path):
    model_cfg = load_model_cfg(repo_root, CONFIGS[host], None)
    torch.manual_seed(0)
    teacher = build_host_model(model_cfg.teacher, 'teacher').eval()
    random_bn_(teacher)
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, ckpt)
    model_cfg.teacher_ckpt = ckpt
    bf16 = MODELS.build(
        dict(model_cfg, teacher_dtype='bf16', teacher_channels_last=True))
    assert len(bf16.teacher_precision.folded) > 20  # ResNet conv + BN pairs
    conv = next(m for m in bf16.teacher.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.dtype == torch.bfloat16
    assert bf16._checked  # the build-time check ran in bf16
    # frozen: nothing of the teacher can take a gradient
    assert not any(p.requires_grad for p in bf16.teacher.parameters())
    assert not set(map(id, bf16.teacher.parameters())) & set(
        map(id, bf16.parameters()))  # not in the optimizer's reach
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(1))
    features = bf16.teacher_features(x)
    # the fp32 reference: what the default distiller records (the teacher
    # as it is, truncated after the last recorded module, same paths)
    paths = bf16.teacher_recorder.paths
    with torch.no_grad(), FeatureRecorder(
            teacher, paths).record(stop_after={}) as reference:
        teacher(x, None, mode='tensor')
    for p in paths:
        ref, got = as_tensor_list(reference[p]), as_tensor_list(features[p])
        assert ref and len(ref) == len(got)
        for r, f in zip(ref, got):
            assert f.dtype == torch.float32 and f.shape == r.shape
            # a target: no graph back into the teacher
            assert not f.requires_grad and f.grad_fn is None
            err = float((f - r).norm() / r.norm())
            MEASURED.setdefault(host, []).append(err)
            assert err < RTOL, f'{host} {p}: relative error {err:.2e}'
    print(f'{host}: relative errors {[f"{e:.1e}" for e in MEASURED[host]]}')
