import math

import numpy as np
import pytest
import torch

from mmkd_channel.models import ChannelWiseDivergence


def cwd_by_hand(s, t, tau):
    """tau^2 / (N*C) * sum_{n,c} KL(p_T || p_S), softmax over H*W."""
    s, t = s.double().numpy(), t.double().numpy()
    n, c, h, w = s.shape
    total = 0.0
    for i in range(n):
        for j in range(c):
            es = [
                math.exp(s[i, j, y, x] / tau) for y in range(h)
                for x in range(w)
            ]
            et = [
                math.exp(t[i, j, y, x] / tau) for y in range(h)
                for x in range(w)
            ]
            ps = [v / sum(es) for v in es]
            pt = [v / sum(et) for v in et]
            total += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    return tau**2 * total / (n * c)


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_formula_non_square(tau):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 6, generator=g)
    t = torch.randn(2, 3, 4, 6, generator=g) * 2
    loss = ChannelWiseDivergence(tau=tau, loss_weight=3.0)(s, t)
    assert math.isclose(
        loss.item(), 3.0 * cwd_by_hand(s, t, tau), rel_tol=1e-5)


def test_fpn_levels_are_summed():
    g = torch.Generator().manual_seed(1)
    s = [
        torch.randn(2, 3, 8, 5, generator=g),
        torch.randn(2, 3, 4, 3, generator=g)
    ]
    t = [torch.randn_like(x) for x in s]
    expect = sum(cwd_by_hand(a, b, 1.0) for a, b in zip(s, t))
    loss = ChannelWiseDivergence(loss_weight=2.0)(tuple(s), tuple(t))
    assert math.isclose(loss.item(), 2.0 * expect, rel_tol=1e-5)


def test_softmax_is_over_positions_not_channels():
    # a constant shift of one channel's map leaves its distribution alone
    g = torch.Generator().manual_seed(2)
    t = torch.randn(1, 2, 3, 5, generator=g)
    s = t.clone()
    s[:, 0] += 7.0
    assert abs(ChannelWiseDivergence()(s, t).item()) < 1e-6
    assert np.isclose(cwd_by_hand(s, t, 1.0), 0.0)


def test_gradient_to_student_only():
    s = torch.randn(2, 3, 4, 5, requires_grad=True)
    t = torch.randn(2, 3, 4, 5, requires_grad=True)
    ChannelWiseDivergence(tau=2.0)(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_channel_and_spatial_mismatch():
    loss = ChannelWiseDivergence()
    with pytest.raises(
            ValueError,
            match=r'channel counts must match: '
            r"student has 8, teacher 16.*ConvBNConnector"):
        loss(torch.rand(2, 8, 4, 4), torch.rand(2, 16, 4, 4))
    with pytest.raises(
            ValueError, match=r'same spatial size.*student 4x4, '
            'teacher 8x8'):
        loss(torch.rand(2, 8, 4, 4), torch.rand(2, 8, 8, 8))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        loss(torch.rand(2, 8), torch.rand(2, 8))


@pytest.mark.parametrize('tau', [0.0, -2.0, float('nan')])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match='ChannelWiseDivergence: tau'):
        ChannelWiseDivergence(tau=tau)
