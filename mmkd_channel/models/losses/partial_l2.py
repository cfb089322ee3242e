"""OFD's partial L2 distance."""
from torch import Tensor

from mmkd_channel.registry import MODELS
from .base import BaseDistillLoss


@MODELS.register_module()
class PartialL2Loss(BaseDistillLoss):
    """``loss_weight * sum(mask * (s - t)**2) / N``, OFD's distance.

    Heo et al., "A Comprehensive Overhaul of Feature Distillation", ICCV
    2019 (https://arxiv.org/abs/1904.01866). ``t`` is the teacher's
    pre-ReLU feature after the margin ReLU (``MarginReLU``), ``s`` the
    student's pre-ReLU feature after its connector (``ConvBNConnector``).
    Where the student is below a non-positive teacher (``s <= t <= 0``)
    the ReLU would make both zero, so that position adds nothing::

        mask = (s > t) | (t > 0)

    The sum is divided by the batch size N only. The authors scale it by
    1/1000 (CIFAR) or 1/10000 (ImageNet) and weight stage ``i`` of ``n``
    by ``1 / 2**(n - i - 1)``; fold both into ``loss_weight``.

    Args:
        loss_weight (float): Weight of the loss.

    Examples:
        >>> import torch
        >>> t = torch.tensor([[[[-1.0, -1.0, 2.0]]]])
        >>> s = torch.tensor([[[[-3.0, 0.0, 0.0]]]])
        >>> PartialL2Loss()(s, t)  # (0 + 1 + 4) / 1
        tensor(5.)
    """

    def loss_single(self, student_feat: Tensor,
                    teacher_feat: Tensor) -> Tensor:
        t = teacher_feat.detach()
        mask = (student_feat > t) | (t > 0)
        sq = (student_feat - t)**2 * mask
        return sq.sum() / student_feat.shape[0]
