import math

import pytest
import torch
from mmpretrain.structures import DataSample

from mmkd_channel.models import SemanticAwareLoss


def test_formula():
    torch.manual_seed(0)
    loss = SemanticAwareLoss(
        in_features=6,
        num_classes=4,
        cls_weight=0.5,
        dist_weight=2.0,
        loss_weight=3.0)
    s, t = torch.randn(3, 6), torch.randn(3, 6)
    labels = [2, 0, 3]
    w, b = loss.fc.weight.detach(), loss.fc.bias.detach()
    ce = 0.0
    for i, y in enumerate(labels):
        logits = [
            sum(w[k, j].item() * s[i, j].item()
                for j in range(6)) + b[k].item() for k in range(4)
        ]
        log_z = math.log(sum(math.exp(v) for v in logits))
        ce += (log_z - logits[y]) / 3
    mse = sum((a - c)**2 for a, c in zip(s.flatten().tolist(),
                                         t.flatten().tolist())) / 18
    samples = [DataSample().set_gt_label(y) for y in labels]
    value = loss(s, t, data_samples=samples)
    assert math.isclose(
        value.item(), 3.0 * (0.5 * ce + 2.0 * mse), rel_tol=1e-5)
    # no labels (the distiller's build-time check): distance only
    assert math.isclose(loss(s, t).item(), 3.0 * 2.0 * mse, rel_tol=1e-5)


def test_gradients_reach_student_and_branch_not_teacher():
    loss = SemanticAwareLoss(in_features=4, num_classes=3)
    s = torch.randn(2, 4, requires_grad=True)
    t = torch.randn(2, 4, requires_grad=True)
    loss(s, t, data_samples=[0, 2]).backward()
    assert s.grad is not None and t.grad is None
    assert loss.fc.weight.grad is not None


def test_errors():
    loss = SemanticAwareLoss(in_features=16, num_classes=5)
    with pytest.raises(ValueError, match=r'\(N, 16\).*in_features=8'):
        loss(torch.rand(2, 8), torch.rand(2, 8))
    with pytest.raises(ValueError, match='ParamFreeUniformizer'):
        loss(torch.rand(2, 16, 2, 2), torch.rand(2, 16, 2, 2))
    with pytest.raises(ValueError, match='outside'):
        loss(torch.rand(2, 16), torch.rand(2, 16), data_samples=[0, 5])
    with pytest.raises(ValueError, match='2 labels for a batch of 3'):
        loss(torch.rand(3, 16), torch.rand(3, 16), data_samples=[0, 1])
    with pytest.raises(ValueError, match='in_features'):
        SemanticAwareLoss(in_features=0, num_classes=5)
