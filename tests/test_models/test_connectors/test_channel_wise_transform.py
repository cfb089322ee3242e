import pytest
import torch

from mmkd_channel.models import ChannelWiseTransform


def test_shape_and_hidden_default():
    cwt = ChannelWiseTransform(in_channels=6, out_channels=10)
    out = cwt(torch.rand(2, 6, 5, 7))
    assert out.shape == (2, 10, 5, 7)
    assert cwt.hidden_channels == 10
    assert cwt.mlp[0].weight.shape == (10, 6, 1, 1)
    cwt = ChannelWiseTransform(6, 10, hidden_channels=3)
    assert cwt.mlp[0].weight.shape == (3, 6, 1, 1)
    assert cwt.mlp[2].weight.shape == (10, 3, 1, 1)


def test_is_the_published_mlp():
    """W2(ReLU(W1 x)) at every position, computed here by hand."""
    torch.manual_seed(0)
    cwt = ChannelWiseTransform(4, 5, hidden_channels=3)
    x = torch.randn(2, 4, 3, 6)
    w1 = cwt.mlp[0].weight[:, :, 0, 0]
    w2 = cwt.mlp[2].weight[:, :, 0, 0]
    v = x.permute(0, 2, 3, 1)  # N,H,W,C
    ref = torch.relu(v @ w1.T + cwt.mlp[0].bias) @ w2.T + cwt.mlp[2].bias
    torch.testing.assert_close(cwt(x), ref.permute(0, 3, 1, 2))


def test_acts_on_each_position_independently():
    torch.manual_seed(0)
    cwt = ChannelWiseTransform(4, 4)
    x = torch.randn(1, 4, 6, 6)
    y = x.clone()
    y[..., 2, 3] += 5.0  # change a single position
    diff = (cwt(x) - cwt(y)).abs().sum(1)[0]
    assert diff[2, 3] > 0
    diff[2, 3] = 0
    assert torch.count_nonzero(diff) == 0


def test_gradients_reach_both_layers_and_input():
    cwt = ChannelWiseTransform(3, 4)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    cwt(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in cwt.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_wrong_channels_message():
    cwt = ChannelWiseTransform(3, 4)
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\).*\(1, 5, 2, 2\)'):
        cwt(torch.rand(1, 5, 2, 2))
    with pytest.raises(ValueError, match='in_channels'):
        ChannelWiseTransform(0, 4)
