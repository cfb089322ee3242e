import math

import pytest
import torch

from mmkd_channel.models import FeatureL2Loss


@pytest.mark.parametrize('reduction', ['mean', 'sum', 'batchmean'])
def test_formula(reduction):
    torch.manual_seed(0)
    s, t = torch.randn(3, 4, 5, 7), torch.randn(3, 4, 5, 7)
    total = 0.0
    for a, b in zip(s.flatten().tolist(), t.flatten().tolist()):
        total += (a - b)**2
    expect = dict(
        mean=total / s.numel(), sum=total, batchmean=total / 3)[reduction]
    loss = FeatureL2Loss(loss_weight=0.5, reduction=reduction)(s, t)
    assert math.isclose(loss.item(), 0.5 * expect, rel_tol=1e-5)


def test_tuple_levels_are_summed():
    torch.manual_seed(0)
    s = (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4))
    t = (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4))
    loss = FeatureL2Loss(loss_weight=2.0)
    expect = sum(2.0 * ((a - b)**2).mean() for a, b in zip(s, t))
    torch.testing.assert_close(loss(s, t), expect)
    with pytest.raises(ValueError, match='2 feature levels and the teacher 1'):
        loss(s, t[:1])


def test_gradient_only_to_student():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    FeatureL2Loss()(s, t.detach()).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize('bad', [-1.0, float('nan'), float('inf')])
def test_bad_loss_weight(bad):
    with pytest.raises(ValueError, match='loss_weight'):
        FeatureL2Loss(loss_weight=bad)


def test_bad_reduction_and_shape():
    with pytest.raises(ValueError, match='reduction'):
        FeatureL2Loss(reduction='avg')
    with pytest.raises(ValueError, match=r'\(1, 2, 3, 3\).*\(1, 4, 3, 3\)'):
        FeatureL2Loss()(torch.rand(1, 2, 3, 3), torch.rand(1, 4, 3, 3))
