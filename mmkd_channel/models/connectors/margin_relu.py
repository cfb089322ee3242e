"""OFD's teacher transform: the margin ReLU."""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from ..ofd import bn_before_feature, ofd_margin_from_bn


@MODELS.register_module()
class MarginReLU(nn.Module):
    """Per-channel ``max(x, m_c)``, applied to the teacher's pre-ReLU feature.

    From Heo et al., "A Comprehensive Overhaul of Feature Distillation",
    ICCV 2019 (https://arxiv.org/abs/1904.01866). Negative teacher
    responses carry little information beyond "negative", so they are
    replaced by the margin ``m_c = E[x | x < 0]`` of their channel (see
    :func:`mmkd_channel.models.ofd_margin_from_bn`), while positive
    responses pass unchanged.

    Use it as ``teacher_connector``. Without an explicit ``margin``, the
    :class:`FeatureDistiller` calls :meth:`bind` when it is built (after the
    teacher checkpoint is loaded); the margin is then computed from the
    teacher BN that produced the feature at ``teacher_path`` (see
    :func:`mmkd_channel.models.bn_before_feature`). The margin is a
    non-persistent buffer: it follows ``.to(device)`` and is recomputed,
    not stored in checkpoints.

    Args:
        margin (Sequence[float], optional): Explicit per-channel margins.

    Examples:
        >>> import torch
        >>> relu = MarginReLU(margin=[-1.0, -0.5])
        >>> x = torch.tensor([[[[-3.0]], [[2.0]]]])
        >>> relu(x).flatten()
        tensor([-1.,  2.])
    """

    def __init__(self, margin: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.explicit = margin is not None
        if margin is None:
            value = torch.empty(0)
        else:
            value = torch.as_tensor(margin, dtype=torch.float32).flatten()
            if value.numel() == 0 or not torch.isfinite(value).all():
                raise ValueError('MarginReLU: margin must be a non-empty '
                                 f'list of finite numbers, got {margin!r}')
        self.register_buffer('margin', value, persistent=False)
        self.bn_path: Optional[str] = None

    def bind(self, student: nn.Module, teacher: nn.Module, student_path: str,
             teacher_path: str, name: str) -> None:
        """Compute the margin from the teacher BN before ``teacher_path``.

        Called by :class:`FeatureDistiller` at build time. Does nothing if
        the margin was given explicitly.

        Raises:
            ValueError: naming the distill term and the path when no BN
                precedes the teacher feature.
        """
        if self.explicit:
            return
        try:
            bn_path, bn = bn_before_feature(teacher, teacher_path, 'teacher')
        except ValueError as e:
            raise ValueError(f"distill['{name}'].teacher_connector "
                             f'(MarginReLU): {e}') from None
        self.bn_path = bn_path
        self.margin = ofd_margin_from_bn(bn).to(self.margin.device)

    def forward(self, feat: Tensor) -> Tensor:
        """``max(feat, margin)`` per channel (dim 1)."""
        if self.margin.numel() == 0:
            raise RuntimeError(
                'MarginReLU has no margin: give margin=[...] or use it as '
                "the teacher_connector of a FeatureDistiller term, which "
                'computes it from the teacher BN.')
        if feat.dim() < 2 or feat.shape[1] != self.margin.numel():
            source = f" (from '{self.bn_path}')" if self.bn_path else ''
            raise ValueError(
                f'MarginReLU has {self.margin.numel()} channel margins'
                f'{source} but the teacher feature has shape '
                f'{tuple(feat.shape)}; the BN and the feature do not match.')
        shape = (1, -1) + (1, ) * (feat.dim() - 2)
        return torch.max(feat, self.margin.to(feat.dtype).view(shape))
