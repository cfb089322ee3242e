"""CWT: the learnable channel-wise transformation of the student feature."""
from typing import Optional, Sequence

from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from .spatial_align import SpatialAlignMixin


@MODELS.register_module()
class ChannelWiseTransform(SpatialAlignMixin, nn.Module):
    """``W2(ReLU(W1(x)))`` with 1x1 convolutions: an MLP over channels.

    From "A Simple and Generic Framework for Feature Distillation via
    Channel-wise Transformation" (Liu, Wang, Chu, ICCVW 2023,
    https://arxiv.org/abs/2303.13212). The same MLP is applied at every
    spatial position independently, so it re-mixes channels but never moves
    information across positions. Hidden width and bias are not published;
    they are arguments.

    Args:
        in_channels (int): Channels of the student feature (Cs).
        out_channels (int): Channels of the teacher feature (Ct).
        hidden_channels (int, optional): Width of the hidden layer.
            Defaults to ``out_channels``.
        bias (bool): Whether the 1x1 convolutions have a bias.
            Defaults to True.
        align (str, optional): Resize the student feature to the teacher's
            ``H x W`` first: ``'bilinear'`` (student coarser) or
            ``'adaptive_pool'`` (student finer). See
            :mod:`mmkd_channel.models.connectors.spatial_align`.

    Examples:
        >>> import torch
        >>> cwt = ChannelWiseTransform(in_channels=8, out_channels=16)
        >>> cwt(torch.rand(2, 8, 5, 7)).shape
        torch.Size([2, 16, 5, 7])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 hidden_channels: Optional[int] = None,
                 bias: bool = True,
                 align: Optional[str] = None) -> None:
        super().__init__()
        self.init_align(align)
        for name, value in (('in_channels', in_channels),
                            ('out_channels', out_channels), ('hidden_channels',
                                                             hidden_channels)):
            if value is not None and (not isinstance(value, int)
                                      or value <= 0):
                raise ValueError(f'ChannelWiseTransform: {name} must be a '
                                 f'positive int, got {value!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels or out_channels
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels, self.hidden_channels, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.hidden_channels, out_channels, 1, bias=bias))

    def forward(self,
                feat: Tensor,
                size: Optional[Sequence[int]] = None) -> Tensor:
        """Map (N, Cs, H, W) to (N, Ct, H, W) (``size`` with ``align``)."""
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise ValueError(
                f'ChannelWiseTransform expects (N, {self.in_channels}, H, W) '
                f'features, got shape {tuple(feat.shape)}')
        return self.mlp(self.prepare_input(feat, size))
