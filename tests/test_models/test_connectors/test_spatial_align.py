import pytest
import torch
import torch.nn.functional as F

from mmkd_channel.models import (ChannelWiseTransform, ConvBNConnector,
                                 SpatialAlign)
from mmkd_channel.models.connectors.spatial_align import (align_hint,
                                                          align_spatial)


def test_bilinear_upsamples_a_coarser_student():
    x = torch.arange(4.).view(1, 1, 2, 2)
    y = align_spatial(x, (4, 4), 'bilinear')
    # half-pixel centres: the corners keep their value, the middle of a
    # 4x4 grid lies a quarter of the way between the 2x2 samples
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 3, 3] == 3
    torch.testing.assert_close(y[0, 0, 0, 1], torch.tensor(0.25))


def test_adaptive_pool_averages_a_finer_student():
    x = torch.randn(2, 3, 8, 6)
    y = align_spatial(x, (4, 3), 'adaptive_pool')
    expect = x.view(2, 3, 4, 2, 3, 2).mean((3, 5))
    torch.testing.assert_close(y, expect)


def test_no_mode_or_same_size_is_identity():
    x = torch.randn(1, 2, 3, 3)
    assert align_spatial(x, (5, 5), None) is x
    assert align_spatial(x, (3, 3), 'bilinear') is x


@pytest.mark.parametrize('cls,kwargs', [
    (ChannelWiseTransform, dict(in_channels=4, out_channels=6)),
    (ConvBNConnector, dict(in_channels=4, out_channels=6)),
])
def test_connectors_resize_before_the_channel_map(cls, kwargs):
    torch.manual_seed(0)
    conn = cls(align='adaptive_pool', **kwargs).eval()
    plain = cls(**kwargs).eval()
    plain.load_state_dict(conn.state_dict())
    x = torch.randn(2, 4, 8, 8)
    out = conn(x, size=(4, 4))
    assert out.shape == (2, 6, 4, 4)
    torch.testing.assert_close(out, plain(F.adaptive_avg_pool2d(x, 4)))
    # without size (or without align) nothing is resized
    assert conn(x).shape == (2, 6, 8, 8)
    assert plain(x, size=(4, 4)).shape == (2, 6, 8, 8)


def test_bad_align_names_the_choices():
    with pytest.raises(ValueError, match="'bilinear'.*'adaptive_pool'"):
        ChannelWiseTransform(4, 6, align='nearest')
    with pytest.raises(ValueError, match='align must be'):
        SpatialAlign(align=None)


def test_hint_only_when_only_the_size_differs():
    s, t = torch.rand(1, 8, 2, 2), torch.rand(1, 8, 4, 4)
    assert "align='bilinear'" in align_hint(s, t)
    assert "align='adaptive_pool'" in align_hint(t, s)
    assert align_hint(torch.rand(1, 4, 2, 2), t) == ''  # channels differ
    assert align_hint(s, torch.rand(1, 8, 2, 2)) == ''
