"""MobileNetV1: a stem conv and 13 depthwise-separable blocks."""
from typing import List, Optional, Sequence, Union

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd_channel.registry import MODELS


class DepthwiseSeparableBlock(nn.Module):
    """3x3 depthwise conv-BN-act, then 1x1 pointwise conv-BN-act.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels of the pointwise conv.
        stride (int): Stride of the depthwise conv.
        norm_cfg (dict): Normalisation layer config.
        act_cfg (dict): Activation layer config.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: dict, act_cfg: dict) -> None:
        super().__init__()
        self.depthwise = ConvModule(
            in_channels,
            in_channels,
            3,
            stride=stride,
            padding=1,
            groups=in_channels,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        self.pointwise = ConvModule(
            in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


@MODELS.register_module()
class MobileNetV1(BaseModule):
    """MobileNetV1 backbone (Howard et al., https://arxiv.org/abs/1704.04861).

    A 3x3 stem conv (32 channels, stride 2) followed by 13 depthwise-
    separable blocks ``layers.0`` ... ``layers.12`` with 64, 128, 128, 256,
    256, 512 (x6), 1024, 1024 output channels (times ``widen_factor``).
    Stages end where the resolution is about to halve, so stage ``i`` has
    stride ``2 ** (i + 1)``:

    =====  ===========  ========  ======  ==================================
    stage  blocks       channels  stride  last BN of the stage
    =====  ===========  ========  ======  ==================================
    0      layers.0     64        2       ``backbone.layers.0.pointwise.bn``
    1      layers.1-2   128       4       ``backbone.layers.2.pointwise.bn``
    2      layers.3-4   256       8       ``backbone.layers.4.pointwise.bn``
    3      layers.5-10  512       16      ``backbone.layers.10.pointwise.bn``
    4      layers.11-12 1024      32      ``backbone.layers.12.pointwise.bn``
    =====  ===========  ========  ======  ==================================

    The pre-ReLU feature of stage ``i`` is the output of its last BN. With
    the default in-place ReLU that output is overwritten a moment later, so
    record it as ``backbone.layers.12.pointwise.activate:input`` (the
    recorder clones it), or set ``act_cfg=dict(type='ReLU', inplace=False)``
    and record ``...pointwise.bn``.

    Args:
        widen_factor (float): Width multiplier of every layer. Default 1.0.
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Default ``(4,)``, the last stage.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k``
            the stem and stages ``0 .. k-1`` (no grad, BN in eval mode).
        norm_cfg (dict): Normalisation config. Default BN.
        act_cfg (dict): Activation config. Default ReLU.
        norm_eval (bool): Keep every BN in eval mode while training.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Default Kaiming for convs, constant 1 for norm layers.

    Examples:
        >>> import torch
        >>> net = MobileNetV1(out_indices=(2, 4))
        >>> [tuple(o.shape) for o in net(torch.rand(1, 3, 224, 224))]
        [(1, 256, 28, 28), (1, 1024, 7, 7)]
    """

    # (out_channels, stride) of the 13 depthwise-separable blocks
    arch = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
            (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2),
            (1024, 1)]
    stem_channels = 32
    stage_ends = (0, 2, 4, 10, 12)  # index of the last block of each stage

    def __init__(
        self,
        widen_factor: float = 1.0,
        out_indices: Sequence[int] = (4, ),
        frozen_stages: int = -1,
        norm_cfg: dict = dict(type='BN'),
        act_cfg: dict = dict(type='ReLU'),
        norm_eval: bool = False,
        init_cfg: Optional[Union[dict, List[dict]]] = [
            dict(type='Kaiming', layer=['Conv2d']),
            dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
        ]
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        num_stages = len(self.stage_ends)
        for i in out_indices:
            if not 0 <= i < num_stages:
                raise ValueError(f'MobileNetV1: out_indices must be in '
                                 f'0..{num_stages - 1}, got {out_indices}')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'MobileNetV1: frozen_stages must be in '
                             f'-1..{num_stages}, got {frozen_stages}')
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        in_ch = self.width(self.stem_channels)
        self.conv1 = ConvModule(
            3,
            in_ch,
            3,
            stride=2,
            padding=1,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        blocks = []
        for out_ch, stride in self.arch:
            out_ch = self.width(out_ch)
            blocks.append(
                DepthwiseSeparableBlock(in_ch, out_ch, stride, norm_cfg,
                                        act_cfg))
            in_ch = out_ch
        self.layers = nn.Sequential(*blocks)
        self.out_channels = [
            self.width(self.arch[e][0]) for e in self.stage_ends
        ]
        self._freeze_stages()

    def width(self, channels: int) -> int:
        """Channels of a layer under the width multiplier (at least 1)."""
        return max(1, int(round(channels * self.widen_factor)))

    def forward(self, x: Tensor) -> tuple:
        """Return the outputs of the stages in ``out_indices``."""
        x = self.conv1(x)
        outs = []
        for i, block in enumerate(self.layers):
            x = block(x)
            if i in self.stage_ends:
                if self.stage_ends.index(i) in self.out_indices:
                    outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.conv1]
        if self.frozen_stages > 0:
            last = self.stage_ends[self.frozen_stages - 1]
            frozen += list(self.layers[:last + 1])
        for module in frozen:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'MobileNetV1':
        """Set train mode, keeping frozen stages (and BN if ``norm_eval``)
        in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
