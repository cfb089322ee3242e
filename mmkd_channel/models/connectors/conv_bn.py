"""OFD's student connector: 1x1 convolution without bias, then BN."""
from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from .base import ChannelConnector, Channels


@MODELS.register_module()
class ConvBNConnector(ChannelConnector):
    """``BN(Conv1x1(x))``: maps the student's ``Cs`` channels to ``Ct``.

    The student-side transform of OFD (Heo et al., "A Comprehensive
    Overhaul of Feature Distillation", ICCV 2019,
    https://arxiv.org/abs/1904.01866): a 1x1 convolution without bias
    followed by a BatchNorm, initialised as in the authors' code (Kaiming
    normal, fan-out; BN weight 1, bias 0). Also a plain channel adapter for
    CWD or KD-style losses when the channel counts differ.

    Args:
        in_channels (int | str, optional): Channels of the student feature
            (Cs). Omitted or ``'auto'``: filled in by the distiller.
        out_channels (int | str, optional): Channels of the teacher feature
            (Ct). Omitted or ``'auto'``: filled in by the distiller.

    Examples:
        >>> import torch
        >>> conn = ConvBNConnector(in_channels=128, out_channels=256)
        >>> conn(torch.rand(2, 128, 7, 5)).shape
        torch.Size([2, 256, 7, 5])
    """

    def __init__(self,
                 in_channels: Channels = None,
                 out_channels: Channels = None) -> None:
        super().__init__(in_channels, out_channels)
        self.maybe_build()

    def build_layers(self) -> None:
        self.conv = nn.Conv2d(
            self.in_channels, self.out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(self.out_channels)
        nn.init.kaiming_normal_(
            self.conv.weight, mode='fan_out', nonlinearity='relu')
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, feat: Tensor) -> Tensor:
        """Map (N, Cs, H, W) to (N, Ct, H, W)."""
        self.check_input(feat)
        return self.bn(self.conv(feat))
