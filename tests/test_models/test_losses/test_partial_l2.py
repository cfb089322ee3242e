import math

import pytest
import torch

from mmkd_channel.models import PartialL2Loss


def partial_l2_by_hand(s, t):
    total = 0.0
    for a, b in zip(s.flatten().tolist(), t.flatten().tolist()):
        if a > b or b > 0:  # nothing where s <= t <= 0
            total += (a - b)**2
    return total / s.shape[0]


def test_formula_non_square():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 5, 2, generator=g)
    t = torch.randn(3, 4, 5, 2, generator=g)
    loss = PartialL2Loss(loss_weight=1e-3)(s, t)
    assert math.isclose(
        loss.item(), 1e-3 * partial_l2_by_hand(s, t), rel_tol=1e-5)


def test_mask_cases():
    t = torch.tensor([-1.0, -1.0, 2.0, 0.0, -1.0]).view(1, 5, 1, 1)
    s = torch.tensor([-3.0, 0.0, 0.0, -1.0, -1.0]).view(1, 5, 1, 1)
    # s<t<=0: 0 | s>t: 1 | t>0: 4 | s<t=0: 0 | s=t: 0
    assert PartialL2Loss()(s, t).item() == pytest.approx(5.0)


def test_divided_by_batch_size_only():
    s, t = torch.ones(4, 2, 3, 5), torch.zeros(4, 2, 3, 5)
    assert PartialL2Loss()(s, t).item() == pytest.approx(2 * 3 * 5)


def test_gradient_to_student_only():
    s = torch.randn(2, 3, 4, 5, requires_grad=True)
    t = torch.randn(2, 3, 4, 5, requires_grad=True)
    PartialL2Loss()(s, t).backward()
    assert s.grad is not None and t.grad is None
    mask = (s > t) | (t > 0)
    assert torch.equal(s.grad != 0, mask & (s != t))
