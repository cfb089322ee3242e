"""Hinton logit distillation (KD)."""
import math

import torch.nn.functional as F
from torch import Tensor

from mmkd_channel.registry import MODELS
from .base import BaseDistillLoss


def check_tau(tau: float, owner: str) -> float:
    """Return ``tau`` as a float, or raise if it is not a finite ``> 0``.

    Args:
        tau (float): Softmax temperature.
        owner (str): Name of the loss, used in the message.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f'{owner}: tau must be a number, got {tau!r}')
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f'{owner}: tau (the softmax temperature) must be a '
                         f'finite number > 0, got tau={tau!r}. The papers '
                         'use 1 to 4.')
    return float(tau)


@MODELS.register_module()
class KDLoss(BaseDistillLoss):
    """``loss_weight * tau**2 * KL(softmax(t / tau) || softmax(s / tau))``.

    Logit distillation of Hinton, Vinyals, Dean, "Distilling the Knowledge
    in a Neural Network" (https://arxiv.org/abs/1503.02531). The softmax is
    over dim 1 (classes); the KL divergence of each sample is summed over
    the classes and averaged over the batch (``batchmean``). For
    segmentation logits ``(N, C, H, W)`` every pixel is a sample: the
    per-pixel KL is averaged over ``N * H * W``. The ``tau**2`` factor
    keeps the gradient scale independent of the temperature.

    Args:
        tau (float): Softmax temperature, > 0.
        loss_weight (float): Weight of the loss.

    Examples:
        >>> import torch
        >>> loss = KDLoss(tau=4.0)
        >>> logits = torch.tensor([[1.0, 2.0, 3.0]])
        >>> loss(logits, logits)
        tensor(0.)
        >>> loss(torch.zeros(2, 10, 5, 7), torch.randn(2, 10, 5, 7)) > 0
        tensor(True)
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.tau = check_tau(tau, 'KDLoss')

    def check_shapes(self, student_feat: Tensor, teacher_feat: Tensor) -> None:
        """Logits of equal shape ``(N, num_classes, ...)`` on both sides."""
        if student_feat.dim() < 2:
            raise ValueError(
                'KDLoss expects logits of shape (N, num_classes) or (N, '
                f'num_classes, H, W), got {tuple(student_feat.shape)}')
        if student_feat.shape[1] != teacher_feat.shape[1]:
            raise ValueError(
                'KDLoss needs the same number of classes on both sides, '
                f'got student {student_feat.shape[1]} (shape '
                f'{tuple(student_feat.shape)}) and teacher '
                f'{teacher_feat.shape[1]} (shape '
                f'{tuple(teacher_feat.shape)}). Distill the logits of '
                'heads trained on the same label set.')
        super().check_shapes(student_feat, teacher_feat)

    def loss_single(self, student_feat: Tensor,
                    teacher_feat: Tensor) -> Tensor:
        log_p_s = F.log_softmax(student_feat / self.tau, dim=1)
        log_p_t = F.log_softmax(teacher_feat.detach() / self.tau, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
        return self.tau**2 * kl.mean()
