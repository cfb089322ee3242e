"""SAKD: parameter-free uniformization of features of any channel count."""
from typing import Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

from mmkd_channel.registry import MODELS


@MODELS.register_module()
class ParamFreeUniformizer(nn.Module):
    """Map ``(N, C, H, W)`` of any ``C`` to ``(N, h * w)`` with no weights.

    From Guo et al., "Semantic-aware knowledge distillation with
    parameter-free feature uniformization", Visual Intelligence 1:6, 2023
    (https://doi.org/10.1007/s44267-023-00003-0). Only the abstract is
    public: a self-attention without learnable weights turns a feature of
    any channel count into a vector of one fixed length, and the same
    operation is applied to teacher and student. This is the reading
    implemented here, per sample:

    1. ``adaptive_avg_pool2d`` to ``output_size = (h, w)``, so both sides
       have ``L = h * w`` positions whatever their resolution;
    2. ``X``: the pooled feature as a ``(C, L)`` matrix;
    3. spatial affinity ``A = softmax(X^T X / sqrt(C))`` (``L x L``), the
       softmax normalising over the first index so that every column of
       ``A`` sums to 1;
    4. attended feature ``X A`` (``C x L``): position ``j`` becomes the
       ``A[:, j]``-weighted average of all positions (self-attention with
       identity query, key and value maps);
    5. the mean over the ``C`` channels: a vector of length ``L``.

    No step has a parameter, so teacher and student get the same,
    equivalent transformation and nothing is learned without supervision.

    Args:
        output_size (int | tuple[int, int]): Spatial size ``(h, w)`` the
            feature is pooled to; the output length is ``h * w``.
            Defaults to 4 (the last stage of a CIFAR ResNet is 4x4).

    Examples:
        >>> import torch
        >>> uni = ParamFreeUniformizer(output_size=4)
        >>> uni(torch.rand(2, 512, 4, 4)).shape
        torch.Size([2, 16])
        >>> uni(torch.rand(2, 2048, 7, 5)).shape
        torch.Size([2, 16])
        >>> sum(p.numel() for p in uni.parameters())
        0
    """

    def __init__(self, output_size: Union[int, Sequence[int]] = 4) -> None:
        super().__init__()
        size = ((output_size, output_size)
                if isinstance(output_size, int) else tuple(output_size))
        if len(size) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0
                for v in size):
            raise ValueError('ParamFreeUniformizer: output_size must be a '
                             'positive int or a pair of positive ints, got '
                             f'{output_size!r}')
        self.output_size = size
        self.out_length = size[0] * size[1]

    def forward(self, feat: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, h * w)``."""
        if feat.dim() != 4:
            raise ValueError('ParamFreeUniformizer expects (N, C, H, W) '
                             f'features, got shape {tuple(feat.shape)}')
        x = F.adaptive_avg_pool2d(feat, self.output_size).flatten(2)
        c = x.shape[1]
        affinity = x.transpose(1, 2) @ x / c**0.5  # (N, L, L), symmetric
        attn = affinity.softmax(dim=1)  # columns sum to 1
        return (x @ attn).mean(dim=1)
