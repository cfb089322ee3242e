import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmkd_channel.models import ParamFreeUniformizer


def uniformize_by_hand(feat, size):
    """Pool, then per sample: X (C, L), A = softmax(X^T X / sqrt(C)) with
    columns summing to 1, X A, mean over channels."""
    pooled = F.adaptive_avg_pool2d(feat, size).double().numpy()
    out = []
    for x in pooled:
        x = x.reshape(x.shape[0], -1)
        c, n = x.shape
        s = x.T @ x / math.sqrt(c)
        a = np.zeros_like(s)
        for j in range(n):
            e = np.exp(s[:, j] - s[:, j].max())
            a[:, j] = e / e.sum()
        out.append((x @ a).mean(axis=0))
    return np.stack(out)


def test_no_parameters_and_equal_length_for_any_channels():
    uni = ParamFreeUniformizer(output_size=(2, 3))
    assert len(list(uni.parameters())) == 0
    assert len(uni.state_dict()) == 0
    a = uni(torch.rand(2, 8, 5, 7))
    b = uni(torch.rand(2, 32, 4, 6))
    assert a.shape == b.shape == (2, 6) == (2, uni.out_length)


def test_formula():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(3, 8, 6, 10, generator=g)
    out = ParamFreeUniformizer(output_size=(3, 5))(feat)
    np.testing.assert_allclose(
        out.double().numpy(),
        uniformize_by_hand(feat, (3, 5)),
        rtol=1e-5,
        atol=1e-6)


def test_same_operation_for_teacher_and_student():
    # one module used on both sides equals two independent instances
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(
        ParamFreeUniformizer(4)(x),
        ParamFreeUniformizer(4)(x))


def test_gradient_flows_through():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    ParamFreeUniformizer(2)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match='output_size'):
        ParamFreeUniformizer(output_size=0)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        ParamFreeUniformizer()(torch.rand(2, 8))
