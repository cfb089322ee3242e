"""Losses take fp16 / bf16 features (from autocast, or a teacher run in half
precision) and compute in fp32."""
import pytest
import torch
from mmpretrain.structures import DataSample

from mmkd_channel.models import (ChannelWiseDivergence, FeatureL2Loss, KDLoss,
                                 PartialL2Loss, SemanticAwareLoss)

LOSSES = [
    (FeatureL2Loss, dict(loss_weight=2.0), (2, 8, 6, 6)),
    (ChannelWiseDivergence, dict(tau=2.0, loss_weight=3.0), (2, 8, 6, 6)),
    (KDLoss, dict(tau=4.0), (2, 10)),
    (PartialL2Loss, dict(loss_weight=1e-3), (2, 8, 6, 6)),
]


def pair(shape, scale=1.0):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(*shape, generator=g) * scale,
            torch.randn(*shape, generator=g) * scale)


@pytest.mark.parametrize('cls,kwargs,shape', LOSSES)
@pytest.mark.parametrize('autocast', [False, True])
def test_bf16_features_give_the_fp32_loss_of_their_values(
        cls, kwargs, shape, autocast):
    loss = cls(**kwargs)
    s32, t32 = pair(shape)
    s = s32.bfloat16().requires_grad_()
    t = t32.bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        value = loss(s, t)
    assert value.dtype == torch.float32
    # exactly the fp32 loss of the bf16 values: nothing rounded in between
    expect = loss(s.detach().float(), t.float())
    torch.testing.assert_close(value, expect, rtol=1e-6, atol=1e-7)
    value.backward()
    assert s.grad is not None and s.grad.dtype == torch.bfloat16
    assert torch.isfinite(s.grad.float()).all()


def test_fp16_squares_beyond_fp16_range_stay_finite():
    # |s - t| = 512: its square (262144) overflows fp16 (max 65504)
    s = torch.full((1, 2, 4, 4), 256.0).half()
    t = torch.full((1, 2, 4, 4), -256.0).half()
    value = FeatureL2Loss()(s, t)
    assert value.dtype == torch.float32 and value.item() == 512.0**2


def test_mixed_student_and_teacher_dtypes():
    s32, t32 = pair((2, 8, 6, 6))
    value = ChannelWiseDivergence()(s32, t32.bfloat16())
    expect = ChannelWiseDivergence()(s32, t32.bfloat16().float())
    torch.testing.assert_close(value, expect)


def test_semantic_aware_loss_in_bf16_autocast():
    torch.manual_seed(0)
    loss = SemanticAwareLoss(in_features=16, num_classes=4)
    s32, t32 = pair((2, 16))
    samples = [DataSample().set_gt_label(y) for y in (1, 3)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = loss(s32.bfloat16(), t32.bfloat16(), data_samples=samples)
    assert value.dtype == torch.float32
    expect = loss(
        s32.bfloat16().float(), t32.bfloat16().float(), data_samples=samples)
    torch.testing.assert_close(value, expect)
    assert loss.fc.weight.dtype == torch.float32
