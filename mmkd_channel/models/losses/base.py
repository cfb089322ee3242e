"""Common behaviour of every distillation loss in this project."""
import math
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

Feature = Union[Tensor, Sequence[Tensor]]


class BaseDistillLoss(nn.Module):
    """Base class: ``forward(student_feat, teacher_feat)`` and ``loss_weight``.

    Subclasses implement :meth:`loss_single` for one pair of tensors. Given
    tuples or lists (for example FPN levels), :meth:`forward` applies
    :meth:`loss_single` level by level and returns the sum. It runs in fp32
    with autocast off, whatever precision the features came out in (fp16 /
    bf16 under AMP, or a teacher run in half precision); the gradient flows
    back to the student feature in its own dtype.

    Args:
        loss_weight (float): Factor applied to the loss. Must be finite and
            non-negative.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(loss_weight,
                      bool) or not isinstance(loss_weight, (int, float)):
            raise TypeError(f'{type(self).__name__}: loss_weight must be a '
                            f'number, got {loss_weight!r}')
        if not math.isfinite(loss_weight) or loss_weight < 0:
            raise ValueError(
                f'{type(self).__name__}: loss_weight must be a finite number '
                f'>= 0, got loss_weight={loss_weight!r}. Use 0 to disable '
                'the term, or a positive weight.')
        self.loss_weight = float(loss_weight)

    def loss_single(self, student_feat: Tensor,
                    teacher_feat: Tensor) -> Tensor:
        """Unweighted loss for one pair of tensors."""
        raise NotImplementedError

    def check_shapes(self, student_feat: Tensor, teacher_feat: Tensor) -> None:
        """Raise a ``ValueError`` if the pair cannot be compared.

        The default demands identical shapes.
        """
        if student_feat.shape != teacher_feat.shape:
            raise ValueError(
                f'{type(self).__name__} needs student and teacher features '
                f'of the same shape, got student {tuple(student_feat.shape)} '
                f'and teacher {tuple(teacher_feat.shape)}. Add a connector '
                'that maps the student feature to the teacher shape.')

    def forward(self, student_feat: Feature, teacher_feat: Feature) -> Tensor:
        """Weighted loss; tuples/lists are summed over their levels."""
        if isinstance(student_feat,
                      (tuple, list)) or isinstance(teacher_feat,
                                                   (tuple, list)):
            if not (isinstance(student_feat, (tuple, list))
                    and isinstance(teacher_feat, (tuple, list))):
                raise ValueError(
                    f'{type(self).__name__}: one side is a tuple of '
                    'features and the other a single tensor; distill '
                    'modules whose outputs have the same structure.')
            if len(student_feat) != len(teacher_feat):
                raise ValueError(
                    f'{type(self).__name__}: the student gives '
                    f'{len(student_feat)} feature levels and the teacher '
                    f'{len(teacher_feat)}.')
            return sum(
                self.forward(s, t) for s, t in zip(student_feat, teacher_feat))
        self.check_shapes(student_feat, teacher_feat)
        with full_precision(student_feat):
            s, t = as_float32(student_feat, teacher_feat)
            loss = self.loss_single(s, t.to(s.dtype))
        return self.loss_weight * loss


def as_float32(*feats: Tensor) -> tuple:
    """The features in fp32 (fp16 / bf16 ones cast up, fp64 kept).

    Softmaxes, squares and sums over many positions lose too much in half
    precision (fp16 overflows at 65504, bf16 keeps 8 bits of mantissa), so
    losses are computed in fp32 whatever the features came out as.
    """
    return tuple(
        f.float() if f.is_floating_point() and f.element_size() < 4 else f
        for f in feats)


@contextmanager
def full_precision(feat: Tensor) -> Iterator[None]:
    """Disable autocast on ``feat``'s device for the ``with`` block."""
    with torch.autocast(device_type=feat.device.type, enabled=False):
        yield


def as_tensor_list(feat: Feature) -> list:
    """Flatten a feature (tensor or nested tuple) into a list of tensors.

    Other leaves (``None``, strings) add nothing; a mapping (a Hugging Face
    model's output) gives its values. Iterating them instead would never
    end: a one-character string yields itself.
    """
    if isinstance(feat, torch.Tensor):
        return [feat]
    if isinstance(feat, Mapping):
        feat = list(feat.values())
    if not isinstance(feat, (tuple, list)):
        return []
    out = []
    for f in feat:
        out.extend(as_tensor_list(f))
    return out
