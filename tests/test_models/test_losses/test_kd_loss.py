import math

import pytest
import torch

from mmkd_channel.models import KDLoss


def kd_by_hand(s, t, tau):
    """KL(softmax(t/tau) || softmax(s/tau)) per sample, averaged; loops."""
    s, t = s.tolist(), t.tolist()

    def softmax(v):
        m = max(v)
        e = [math.exp((x - m) / tau) for x in v]
        return [x / sum(e) for x in e]

    total, count = 0.0, 0
    for ps, pt in zip(s, t):
        ps, pt = softmax(ps), softmax(pt)
        total += sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt))
        count += 1
    return tau**2 * total / count


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_classification_logits_formula(tau):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    loss = KDLoss(tau=tau, loss_weight=0.9)(s, t)
    assert math.isclose(loss.item(), 0.9 * kd_by_hand(s, t, tau), rel_tol=1e-5)


def test_segmentation_logits_every_pixel_is_a_sample():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 4, 3, 5, generator=g) * 3
    t = torch.randn(2, 4, 3, 5, generator=g) * 3
    # one row per pixel: (N*H*W, C)
    rows_s = s.permute(0, 2, 3, 1).reshape(-1, 4)
    rows_t = t.permute(0, 2, 3, 1).reshape(-1, 4)
    expect = kd_by_hand(rows_s, rows_t, 2.0)
    loss = KDLoss(tau=2.0)(s, t)
    assert math.isclose(loss.item(), expect, rel_tol=1e-5)


def test_zero_for_equal_logits_and_gradient_to_student_only():
    s = torch.randn(3, 10, requires_grad=True)
    t = s.detach().clone().requires_grad_(True)
    loss = KDLoss(tau=4.0)(s, t)
    assert abs(loss.item()) < 1e-6
    KDLoss(tau=4.0)(s, t * 2).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_class_count_mismatch():
    with pytest.raises(
            ValueError,
            match=r'same number of classes.*'
            r'student 10.*teacher 100'):
        KDLoss()(torch.rand(2, 10), torch.rand(2, 100))
    with pytest.raises(ValueError, match='shape'):
        KDLoss()(torch.rand(2), torch.rand(2))


@pytest.mark.parametrize('tau', [0, -1.0, float('inf'), float('nan')])
def test_bad_tau(tau):
    with pytest.raises(
            ValueError, match=r'tau .* must be a finite number '
            '> 0'):
        KDLoss(tau=tau)
    with pytest.raises(TypeError, match='tau must be a number'):
        KDLoss(tau='4')
