"""Match the student's spatial size to the teacher's, and its dtype to ours.

Feature pairs often differ in resolution: a ViT teacher gives a 1/16 map, a
CNN student's last stage is 1/32; a segmenter at output stride 8 meets one at
stride 32. Connectors that take ``align`` resize the student feature to the
teacher's ``H x W`` before transforming it:

- ``'bilinear'``: bilinear interpolation; use it when the student is
  *coarser* than the teacher (upsampling; pooling cannot add positions).
- ``'adaptive_pool'``: adaptive average pooling; use it when the student is
  *finer* than the teacher (each teacher position is compared with the mean
  of the student positions it covers, which keeps their information instead
  of sampling some of them).
- ``None`` (default): no resizing; the loss then demands equal sizes.

The target size reaches the connector as ``forward(feat, size=(h, w))`` from
the distiller, which knows the teacher feature.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkd_channel.registry import MODELS

ALIGN_MODES = ('bilinear', 'adaptive_pool')


def check_align(align: Optional[str], owner: str) -> Optional[str]:
    """Return ``align`` if valid (``None`` or one of :data:`ALIGN_MODES`).

    Raises:
        ValueError: naming ``owner`` and the valid values.
    """
    if align is not None and align not in ALIGN_MODES:
        raise ValueError(
            f'{owner}: align must be None, {ALIGN_MODES[0]!r} (student '
            f'coarser than the teacher) or {ALIGN_MODES[1]!r} (student '
            f'finer), got align={align!r}')
    return align


def align_spatial(feat: Tensor, size: Optional[Sequence[int]],
                  mode: Optional[str]) -> Tensor:
    """Resize an ``(N, C, H, W)`` feature to ``size`` with ``mode``.

    Returns ``feat`` unchanged when ``mode`` or ``size`` is ``None`` or the
    size already matches.

    Examples:
        >>> import torch
        >>> align_spatial(torch.rand(1, 2, 7, 7), (14, 14), 'bilinear').shape
        torch.Size([1, 2, 14, 14])
        >>> align_spatial(torch.rand(1, 2, 8, 8), (2, 2),
        ...               'adaptive_pool').shape
        torch.Size([1, 2, 2, 2])
    """
    if mode is None or size is None:
        return feat
    size = tuple(int(s) for s in size)
    if tuple(feat.shape[-2:]) == size:
        return feat
    if feat.dim() != 4:
        raise ValueError(f'align={mode!r} resizes (N, C, H, W) features, '
                         f'got shape {tuple(feat.shape)}')
    if mode == 'bilinear':
        return F.interpolate(
            feat, size=size, mode='bilinear', align_corners=False)
    return F.adaptive_avg_pool2d(feat, size)


def match_weight_dtype(module: nn.Module, feat: Tensor) -> Tensor:
    """Cast ``feat`` to the dtype of ``module``'s weights outside autocast.

    Under ``autocast`` the layers cast for themselves, so the feature is
    left as it is (no fp32 copy). Outside it (a student run in half
    precision, a teacher in bf16) an fp16 feature meeting fp32 connector
    weights would raise a dtype error; the connector weights stay fp32 and
    the feature is cast up to them.
    """
    weight = next(module.parameters(), None)
    if (weight is None or not feat.is_floating_point()
            or feat.dtype == weight.dtype
            or autocast_enabled(feat.device.type)):
        return feat
    return feat.to(weight.dtype)


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (torch >= 2.0)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


class SpatialAlignMixin:
    """Gives a connector the ``align`` option and the input preparation.

    A connector calls :meth:`init_align` in ``__init__`` and starts its
    ``forward(feat, size=None)`` with ``feat = self.prepare_input(feat,
    size)``: the feature is cast to the connector's weight dtype and
    resized to ``size`` (the teacher's ``H x W``) as ``align`` says.
    """

    align: Optional[str] = None

    def init_align(self, align: Optional[str]) -> None:
        """Store a validated ``align`` (see :data:`ALIGN_MODES`)."""
        self.align = check_align(align, type(self).__name__)

    def prepare_input(self,
                      feat: Tensor,
                      size: Optional[Sequence[int]] = None) -> Tensor:
        """Match dtypes, then resize ``feat`` to ``size`` (if ``align``)."""
        return align_spatial(match_weight_dtype(self, feat), size, self.align)


@MODELS.register_module()
class SpatialAlign(SpatialAlignMixin, nn.Module):
    """A connector that only resizes the student feature to the teacher's.

    For pairs with the same channels and different strides (e.g. a student
    and a teacher segmenter at output stride 32 and 8). With another
    connector, set that connector's ``align`` instead.

    Args:
        align (str): ``'bilinear'`` (student coarser) or ``'adaptive_pool'``
            (student finer).

    Examples:
        >>> import torch
        >>> conn = SpatialAlign(align='adaptive_pool')
        >>> conn(torch.rand(2, 8, 16, 16), size=(8, 8)).shape
        torch.Size([2, 8, 8, 8])
    """

    def __init__(self, align: str = 'bilinear') -> None:
        super().__init__()
        if align is None:
            raise ValueError('SpatialAlign: align must be '
                             f'{ALIGN_MODES[0]!r} or {ALIGN_MODES[1]!r}, '
                             'got None')
        self.init_align(align)

    def forward(self,
                feat: Tensor,
                size: Optional[Sequence[int]] = None) -> Tensor:
        """Resize ``(N, C, H, W)`` to ``(N, C, *size)``."""
        return self.prepare_input(feat, size)


def spatial_sizes(feat) -> Optional[object]:
    """``(h, w)`` of a 4-D tensor, a tuple of them for tuples, else None."""
    if isinstance(feat, (tuple, list)):
        return tuple(spatial_sizes(f) for f in feat)
    if isinstance(feat, Tensor) and feat.dim() == 4:
        return tuple(feat.shape[-2:])
    return None


def call_connector(connector: nn.Module, feat: Tensor,
                   size: Optional[Tuple[int, int]]) -> Tensor:
    """``connector(feat)``, with ``size=`` if the connector aligns."""
    if size is not None and getattr(connector, 'align', None):
        return connector(feat, size=size)
    return connector(feat)


def level_hint(s: Sequence, t: Sequence) -> str:
    """Hint for features with different numbers of levels (a single map
    next to an FPN's tuple): which level of the other side has its size."""
    hint = (f'. The two sides have different numbers of levels (student '
            f'{len(s)}, teacher {len(t)}): distill modules with the same '
            'levels')
    if min(len(s), len(t)) != 1:
        return hint
    single, many, other = (s[0], t, 'teacher') if len(s) == 1 else (t[0], s,
                                                                    'student')
    if not (isinstance(single, Tensor) and single.dim() == 4):
        return hint
    size = tuple(single.shape[-2:])
    for k, f in enumerate(many):
        if isinstance(f, Tensor) and f.dim() == 4 and \
                tuple(f.shape[-2:]) == size:
            return (f"{hint}; the {other}'s level {k} has the other side's "
                    f'size {size[0]}x{size[1]}: name the {other} module that '
                    f"produces it (for an mmdet FPN: 'neck.fpn_convs.{k}')")
    return hint + (f'; no {other} level has the size {size[0]}x{size[1]} of '
                   'the other side')


def align_hint(student_feat, teacher_feat) -> str:
    """A suggestion when two features differ only in ``H x W``, else ``''``.

    Both arguments are features after their connectors.
    """
    s = [student_feat] if isinstance(student_feat, Tensor) else student_feat
    t = [teacher_feat] if isinstance(teacher_feat, Tensor) else teacher_feat
    if not isinstance(s, (tuple, list)) or not isinstance(t, (tuple, list)):
        return ''
    if len(s) != len(t):
        return level_hint(s, t)
    for a, b in zip(s, t):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)
                and a.dim() == 4 and b.dim() == 4):
            continue
        if a.shape[:2] == b.shape[:2] and a.shape[2:] != b.shape[2:]:
            sh, sw = a.shape[2:]
            th, tw = b.shape[2:]
            mode = 'bilinear' if sh * sw < th * tw else 'adaptive_pool'
            return (f'. Only the spatial size differs (student {sh}x{sw}, '
                    f'teacher {th}x{tw}): set align={mode!r} on the '
                    "connector, or connector=dict(type='SpatialAlign', "
                    f'align={mode!r}) if the channels already match')
    return ''
