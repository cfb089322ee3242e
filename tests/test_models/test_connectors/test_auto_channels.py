"""Connectors whose channel counts are left out ('auto') until built."""
import pytest
import torch

from mmkd_channel.models import ChannelWiseTransform, ConvBNConnector


@pytest.mark.parametrize('cls', [ChannelWiseTransform, ConvBNConnector])
def test_unbuilt_until_build(cls):
    conn = cls()
    assert not conn.is_built and not list(conn.parameters())
    with pytest.raises(RuntimeError, match='filled by the FeatureDistiller'):
        conn(torch.rand(1, 3, 2, 2))
    conn.build(3, 5)
    assert conn.is_built and (conn.in_channels, conn.out_channels) == (3, 5)
    assert conn(torch.rand(2, 3, 4, 4)).shape == (2, 5, 4, 4)
    n = sum(p.numel() for p in conn.parameters())
    conn.build(7, 9)  # a second build changes nothing
    assert sum(p.numel() for p in conn.parameters()) == n


@pytest.mark.parametrize('cls', [ChannelWiseTransform, ConvBNConnector])
def test_auto_string_and_one_side_given(cls):
    conn = cls(in_channels='auto', out_channels=5)
    assert not conn.is_built and conn.out_channels == 5
    with pytest.raises(ValueError, match=r'out_channels=5 was given.*6'):
        conn.build(3, 6)
    conn.build(3, 5)
    assert conn(torch.rand(1, 3, 2, 2)).shape == (1, 5, 2, 2)


@pytest.mark.parametrize('bad', [0, -2, 2.5, 'full', True])
def test_bad_channel_values(bad):
    with pytest.raises(
            ValueError,
            match=r"in_channels must be a positive "
            r"int, or omitted / 'auto'"):
        ChannelWiseTransform(in_channels=bad, out_channels=4)


def test_same_weights_as_explicit_under_the_same_seed():
    torch.manual_seed(3)
    explicit = ChannelWiseTransform(6, 10)
    torch.manual_seed(3)
    auto = ChannelWiseTransform()
    auto.build(6, 10)
    for (k, a), (_, b) in zip(explicit.state_dict().items(),
                              auto.state_dict().items()):
        assert torch.equal(a, b), k
    assert auto.hidden_channels == 10
    assert ChannelWiseTransform(hidden_channels=3).hidden_channels == 3
