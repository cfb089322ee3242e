import pytest
import torch

from mmkd_channel.models import ConvBNConnector


def test_is_conv1x1_without_bias_then_bn():
    conn = ConvBNConnector(in_channels=3, out_channels=5)
    assert conn.conv.bias is None and conn.conv.kernel_size == (1, 1)
    conn.eval()
    with torch.no_grad():
        conn.bn.running_mean.uniform_(-1, 1)
        conn.bn.running_var.uniform_(0.5, 2)
        conn.bn.weight.uniform_(0.5, 2)
        conn.bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 4, 6)
    w = conn.conv.weight[:, :, 0, 0]  # (5, 3)
    bn = conn.bn
    y = torch.einsum('oc,nchw->nohw', w, x)
    shape = (1, 5, 1, 1)
    expect = ((y - bn.running_mean.view(shape)) /
              torch.sqrt(bn.running_var.view(shape) + bn.eps) *
              bn.weight.view(shape) + bn.bias.view(shape))
    torch.testing.assert_close(conn(x), expect)


def test_bad_channels():
    with pytest.raises(ValueError, match='in_channels must be a positive'):
        ConvBNConnector(0, 4)
    with pytest.raises(
            ValueError, match=r'expects \(N, 3, H, W\).*'
            r'\(2, 4, 5, 5\)'):
        ConvBNConnector(3, 4)(torch.rand(2, 4, 5, 5))
