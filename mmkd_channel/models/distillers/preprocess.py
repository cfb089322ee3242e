"""Feed the teacher its own normalisation of the student's batch."""
from typing import Optional, Tuple

import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn

#: Attribute names under which the hosts' preprocessors keep "BGR -> RGB".
_FLIP_ATTRS = ('_channel_conversion', 'channel_conversion', 'to_rgb')


def normalisation(
        dp: Optional[nn.Module]) -> Optional[Tuple[Tensor, Tensor, bool]]:
    """``(mean, std, flip)`` of a host data preprocessor, or None.

    ``None`` when the preprocessor has no mean / std (then nothing can be
    said about the pixels the model expects). A preprocessor with
    normalisation switched off is the identity: mean 0, std 1.
    """
    if dp is None:
        return None
    flip = any(bool(getattr(dp, a, False)) for a in _FLIP_ATTRS)
    if not getattr(dp, '_enable_normalize', False):
        if not hasattr(dp, '_enable_normalize'):
            return None
        return torch.zeros(3), torch.ones(3), flip
    mean, std = getattr(dp, 'mean', None), getattr(dp, 'std', None)
    if not isinstance(mean, Tensor) or not isinstance(std, Tensor):
        return None
    return mean.detach().flatten().float(), std.detach().flatten().float(), \
        flip


class TeacherInputRemap(nn.Module):
    """``x_t = x_s[perm] * scale + shift``, per channel.

    The student's preprocessor turned an image ``I`` into
    ``x_s = (flip_s(I) - mean_s) / std_s``; the teacher expects
    ``x_t = (flip_t(I) - mean_t) / std_t``. With ``perm`` the channel
    reversal when exactly one of them converts BGR to RGB::

        x_t = (perm(x_s * std_s + mean_s) - mean_t) / std_t

    which is exact for every image pixel (padding, which the student's
    preprocessor fills after normalising, is mapped like a pixel).

    Args:
        scale (Tensor): ``(C, )`` factors.
        shift (Tensor): ``(C, )`` offsets.
        flip (bool): Reverse the channel order first.
    """

    def __init__(self, scale: Tensor, shift: Tensor, flip: bool) -> None:
        super().__init__()
        self.flip = flip
        self.register_buffer('scale', scale.view(1, -1, 1, 1), False)
        self.register_buffer('shift', shift.view(1, -1, 1, 1), False)

    @classmethod
    def between(
            cls, student_dp: Optional[nn.Module],
            teacher_dp: Optional[nn.Module]) -> Optional['TeacherInputRemap']:
        """The remap from the student's to the teacher's normalisation, or
        None when they agree (or one of them is unknown)."""
        s, t = normalisation(student_dp), normalisation(teacher_dp)
        if s is None or t is None:
            return None
        (mean_s, std_s, flip_s), (mean_t, std_t, flip_t) = s, t
        if mean_s.numel() != mean_t.numel() or std_s.numel() != std_t.numel():
            return None
        flip = flip_s != flip_t
        if (not flip and torch.allclose(mean_s, mean_t)
                and torch.allclose(std_s, std_t)):
            return None
        if flip:
            mean_s, std_s = mean_s.flip(0), std_s.flip(0)
        remap = cls(std_s / std_t, (mean_s - mean_t) / std_t, flip)
        MMLogger.get_current_instance().info(
            'FeatureDistiller: the teacher normalises its inputs '
            f'differently (mean {mean_t.tolist()}, std {std_t.tolist()}, '
            f'bgr_to_rgb {flip_t}) from the student (mean '
            f'{normalisation(student_dp)[0].tolist()}, std '
            f'{normalisation(student_dp)[1].tolist()}, bgr_to_rgb '
            f'{flip_s}); it is fed the same images in its own '
            'normalisation (an exact per-channel remap of the student '
            'batch' + (', channels reversed' if flip else '') + ').')
        return remap

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.scale.shape[1]:
            return x
        if self.flip:
            x = x.flip(1)
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
