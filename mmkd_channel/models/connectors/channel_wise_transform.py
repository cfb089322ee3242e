"""CWT: the learnable channel-wise transformation of the student feature."""
from typing import Optional

from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from .base import ChannelConnector, Channels


@MODELS.register_module()
class ChannelWiseTransform(ChannelConnector):
    """``W2(ReLU(W1(x)))`` with 1x1 convolutions: an MLP over channels.

    From "A Simple and Generic Framework for Feature Distillation via
    Channel-wise Transformation" (Liu, Wang, Chu, ICCVW 2023,
    https://arxiv.org/abs/2303.13212). The same MLP is applied at every
    spatial position independently, so it re-mixes channels but never moves
    information across positions. Hidden width and bias are not published;
    they are arguments.

    Args:
        in_channels (int | str, optional): Channels of the student feature
            (Cs). Omitted or ``'auto'``: filled in by the distiller.
        out_channels (int | str, optional): Channels of the teacher feature
            (Ct). Omitted or ``'auto'``: filled in by the distiller.
        hidden_channels (int, optional): Width of the hidden layer.
            Defaults to ``out_channels``.
        bias (bool): Whether the 1x1 convolutions have a bias.
            Defaults to True.

    Examples:
        >>> import torch
        >>> cwt = ChannelWiseTransform(in_channels=8, out_channels=16)
        >>> cwt(torch.rand(2, 8, 5, 7)).shape
        torch.Size([2, 16, 5, 7])
        >>> cwt = ChannelWiseTransform()  # widths from the distiller
        >>> cwt.build(8, 16)
        >>> cwt.mlp[2].weight.shape
        torch.Size([16, 16, 1, 1])
    """

    def __init__(self,
                 in_channels: Channels = None,
                 out_channels: Channels = None,
                 hidden_channels: Optional[int] = None,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels)
        if hidden_channels is not None and (type(hidden_channels) is not int
                                            or hidden_channels <= 0):
            raise ValueError('ChannelWiseTransform: hidden_channels must be '
                             f'a positive int, got {hidden_channels!r}')
        self._hidden = hidden_channels
        self.bias = bias
        self.mlp: Optional[nn.Sequential] = None
        self.maybe_build()

    @property
    def hidden_channels(self) -> Optional[int]:
        """Hidden width: the given one, else ``out_channels``."""
        return self._hidden or self.out_channels

    def build_layers(self) -> None:
        self.mlp = nn.Sequential(
            nn.Conv2d(
                self.in_channels, self.hidden_channels, 1, bias=self.bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(
                self.hidden_channels, self.out_channels, 1, bias=self.bias))

    def forward(self, feat: Tensor) -> Tensor:
        """Map (N, Cs, H, W) to (N, Ct, H, W)."""
        self.check_input(feat)
        return self.mlp(feat)
