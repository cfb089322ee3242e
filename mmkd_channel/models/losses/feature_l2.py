"""Plain L2 distance between (transformed) student and teacher features."""
from torch import Tensor

from mmkd_channel.registry import MODELS
from .base import BaseDistillLoss


@MODELS.register_module()
class FeatureL2Loss(BaseDistillLoss):
    """``loss_weight * reduce((student_feat - teacher_feat) ** 2)``.

    The distance of CWT (Liu et al., "A Simple and Generic Framework for
    Feature Distillation via Channel-wise Transformation",
    https://arxiv.org/abs/2303.13212). The paper does not publish the
    normalisation, so it is an argument.

    Args:
        loss_weight (float): Weight of the loss (the paper's alpha).
        reduction (str): ``'mean'`` (mean over all elements, default),
            ``'sum'``, or ``'batchmean'`` (sum divided by the batch size N).

    Examples:
        >>> import torch
        >>> loss = FeatureL2Loss(loss_weight=2.0, reduction='sum')
        >>> loss(torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
        tensor(36.)
    """

    REDUCTIONS = ('mean', 'sum', 'batchmean')

    def __init__(self,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__(loss_weight)
        if reduction not in self.REDUCTIONS:
            raise ValueError(f'FeatureL2Loss: reduction must be one of '
                             f'{self.REDUCTIONS}, got {reduction!r}')
        self.reduction = reduction

    def loss_single(self, student_feat: Tensor,
                    teacher_feat: Tensor) -> Tensor:
        sq = (student_feat - teacher_feat)**2
        if self.reduction == 'mean':
            return sq.mean()
        if self.reduction == 'sum':
            return sq.sum()
        return sq.sum() / student_feat.shape[0]
