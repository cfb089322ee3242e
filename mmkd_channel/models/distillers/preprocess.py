"""Feed the teacher its own normalisation of the student's batch."""
from typing import Optional, Tuple

import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn

#: Attribute names under which the hosts' preprocessors keep "BGR -> RGB".
_FLIP_ATTRS = ('_channel_conversion', 'channel_conversion', 'to_rgb')
#: mmpretrain's wrappers of models trained elsewhere. Their default
#: preprocessor does not normalise, but no timm or Hugging Face model was
#: trained on 0-255 BGR pixels.
_FOREIGN_WRAPPERS = ('TimmClassifier', 'HuggingFaceClassifier')


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


def warn_raw_pixels(model: nn.Module, role: str) -> None:
    """Warn when a timm / Hugging Face teacher would see 0-255 BGR pixels.

    Its wrapper's preprocessor has no mean / std unless the config gives
    one, and the distiller then maps the student's batch back to raw
    pixels: the teacher runs, but on inputs it was never trained on.
    """
    kind = type(model).__name__
    norm = normalisation(getattr(model, 'data_preprocessor', None))
    if kind not in _FOREIGN_WRAPPERS or norm is None:
        return
    mean, std, flip = norm
    if mean.abs().max() > 0 or (std - 1).abs().max() > 0:
        return
    MMLogger.get_current_instance().warning(
        f'FeatureDistiller: the {role} ({kind}) has a data_preprocessor '
        'without mean / std, so it is fed 0-255 '
        f'{"RGB" if flip else "BGR"} pixels. Give it the normalisation '
        f'its model was trained with in the {role} config, e.g. '
        'data_preprocessor=dict(mean=[123.675, 116.28, 103.53], '
        'std=[58.395, 57.12, 57.375], to_rgb=True) (ImageNet: most timm '
        'models) or dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True) '
        '(Hugging Face ViTs).')
