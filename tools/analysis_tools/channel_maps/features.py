"""Helpers on recorded features: levels, shapes, channel statistics.

Pure tensor functions (no model, no drawing), with examples that run as
doctests: which level of an FPN tuple, whether a feature is a spatial map
or per-channel values, which teacher channels carry the most energy, which
student channel follows a teacher channel best, and CWD's per-channel
spatial softmax.
"""
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def pick_level(feat: Any, level: int, what: str) -> Any:
    """``feat[level]`` for tuple features (FPN), ``feat`` otherwise."""
    if isinstance(feat, (tuple, list)):
        if not -len(feat) <= level < len(feat):
            raise IndexError(f'--level {level}: the {what} feature has '
                             f'{len(feat)} levels (0..{len(feat) - 1})')
        return feat[level]
    return feat


def is_map(feat: Any) -> bool:
    """Whether ``feat`` is an ``(N, C, H, W)`` tensor."""
    return isinstance(feat, Tensor) and feat.dim() == 4


def as_vector(feat: Any) -> Optional[Tensor]:
    """Per-channel values ``(C,)`` of a pooled ``(N, C)`` or 1x1 feature.

    Returns ``None`` for anything with a spatial extent.

    Examples:
        >>> import torch
        >>> as_vector(torch.ones(1, 3, 1, 1)).shape, as_vector(torch.ones(
        ...     1, 3, 2, 2))
        (torch.Size([3]), None)
    """
    if not isinstance(feat, Tensor):
        return None
    if feat.dim() == 2:
        return feat[0]
    if feat.dim() == 4 and feat.shape[-2] * feat.shape[-1] == 1:
        return feat[0, :, 0, 0]
    return None


def channel_energy(feat: Tensor) -> Tensor:
    """Mean activation energy ``mean(x_c ** 2)`` per channel of ``(C, H, W)``.

    Examples:
        >>> import torch
        >>> channel_energy(torch.tensor([[[1., -1.]], [[2., 0.]]]))
        tensor([1., 2.])
    """
    return feat.float().pow(2).flatten(1).mean(1)


def best_correlated(student: Tensor, teacher_map: Tensor) -> Tuple[int, float]:
    """Student channel most correlated (``|r|``) with one teacher map.

    Args:
        student (Tensor): Student feature ``(Cs, Hs, Ws)``; resized
            bilinearly to the teacher's spatial size when it differs.
        teacher_map (Tensor): One teacher channel ``(H, W)``.

    Returns:
        tuple: ``(channel index, Pearson r)``.

    Examples:
        >>> import torch
        >>> t = torch.arange(16.).view(4, 4)
        >>> s = torch.stack([torch.rand(4, 4), -2 * t, torch.rand(4, 4)])
        >>> best_correlated(s, t)[0], round(best_correlated(s, t)[1], 3)
        (1, -1.0)
    """
    s = student.double()
    if s.shape[-2:] != teacher_map.shape[-2:]:
        s = F.interpolate(
            s[None],
            size=teacher_map.shape[-2:],
            mode='bilinear',
            align_corners=False)[0]
    s = s.flatten(1)
    t = teacher_map.double().flatten()
    s = s - s.mean(1, keepdim=True)
    t = t - t.mean()
    # float64: r is scale-free, so even tiny untrained activations count;
    # constant maps (zero norm) get r = 0
    denom = s.norm(dim=1) * t.norm()
    r = torch.where(denom > 0, (s @ t) / denom.clamp_min(1e-300),
                    torch.zeros_like(denom))
    idx = int(r.abs().argmax())
    return idx, float(r[idx])


def spatial_softmax(fmap: Tensor, tau: float) -> Tensor:
    """CWD's per-channel distribution ``softmax(x / tau)`` over positions."""
    return F.softmax(fmap.float().flatten() / tau, dim=0).view(fmap.shape)


def describe(feat: Any) -> str:
    """Shape(s) of a feature as text."""
    if isinstance(feat, (tuple, list)):
        return '(' + ', '.join(describe(f) for f in feat) + ')'
    if isinstance(feat, Tensor):
        return 'x'.join(str(v) for v in feat.shape)
    return type(feat).__name__


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson's r of two vectors (0 when one is constant).

    Examples:
        >>> import torch
        >>> round(pearson(torch.tensor([1., 2., 3.]),
        ...               torch.tensor([2., 4., 7.])), 3)
        0.993
    """
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = float(x.norm() * y.norm())
    return float(x @ y) / denom if denom > 0 else 0.0
