"""SAKD: semantic-aware loss on uniformized teacher/student vectors."""
from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from .base import BaseDistillLoss, as_float32, full_precision
from .loss_inputs import labels_from_data_samples


@MODELS.register_module()
class SemanticAwareLoss(BaseDistillLoss):
    """Classification branch on the student vector plus MSE to the teacher.

    From Guo et al., "Semantic-aware knowledge distillation with
    parameter-free feature uniformization", Visual Intelligence 1:6, 2023
    (https://doi.org/10.1007/s44267-023-00003-0). Only the abstract is
    public; the reading implemented here: both features are first mapped
    to vectors of one length ``L`` by ``ParamFreeUniformizer`` (as the
    ``connector`` and ``teacher_connector``), then::

        loss = loss_weight * (cls_weight * CE(fc(u_S), y)
                              + dist_weight * mean((u_S - u_T)**2))

    ``fc`` is a standalone linear classifier ``L -> num_classes`` (the
    semantic-aware branch; it is trained with the student and dropped at
    test time), ``y`` the image labels taken from the ``data_samples``
    that the distiller passes to losses whose ``forward`` has that
    parameter (mmpretrain ``data_sample.gt_label``). Without
    ``data_samples`` (the distiller's build-time shape check) only the
    distance term is computed.

    Args:
        in_features (int): Length ``L`` of the uniformized vectors
            (``ParamFreeUniformizer.out_length``, ``h * w``).
        num_classes (int): Number of classes of the classification branch.
        cls_weight (float): Weight of the cross-entropy term.
        dist_weight (float): Weight of the teacher-student MSE term.
        loss_weight (float): Overall weight.

    Examples:
        >>> import torch
        >>> loss = SemanticAwareLoss(in_features=16, num_classes=100)
        >>> s, t = torch.rand(2, 16), torch.rand(2, 16)
        >>> loss(s, t, data_samples=[3, 7]).shape
        torch.Size([])
        >>> loss(t, t)  # no labels: the distance term alone
        tensor(0.)
    """

    def __init__(self,
                 in_features: int,
                 num_classes: int,
                 cls_weight: float = 1.0,
                 dist_weight: float = 1.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        sizes = dict(in_features=in_features, num_classes=num_classes)
        for name, value in sizes.items():
            if type(value) is not int or value <= 0:
                raise ValueError(f'SemanticAwareLoss: {name} must be a '
                                 f'positive int, got {value!r}')
        weights = dict(cls_weight=cls_weight, dist_weight=dist_weight)
        for name, value in weights.items():
            if type(value) not in (int, float) or not value >= 0:
                raise ValueError(f'SemanticAwareLoss: {name} must be a '
                                 f'number >= 0, got {value!r}')
        self.in_features = in_features
        self.num_classes = num_classes
        self.cls_weight = float(cls_weight)
        self.dist_weight = float(dist_weight)
        self.fc = nn.Linear(in_features, num_classes)

    def check_shapes(self, student_feat: Tensor, teacher_feat: Tensor) -> None:
        """Both sides ``(N, in_features)`` vectors."""
        if student_feat.dim() != 2 or student_feat.shape[1] != (
                self.in_features):
            fix = ''
            if student_feat.dim() == 2:
                fix = f', or set in_features={student_feat.shape[1]}'
            raise ValueError(
                'SemanticAwareLoss expects uniformized vectors of shape '
                f'(N, {self.in_features}), got student '
                f'{tuple(student_feat.shape)}. Use connector and '
                "teacher_connector dict(type='ParamFreeUniformizer', "
                f'output_size=(h, w)) with h * w == in_features{fix}.')
        super().check_shapes(student_feat, teacher_feat)

    def forward(self,
                student_feat: Tensor,
                teacher_feat: Tensor,
                data_samples: Optional[Sequence] = None) -> Tensor:
        """Weighted loss; labels come from ``data_samples``."""
        if not (isinstance(student_feat, Tensor)
                and isinstance(teacher_feat, Tensor)):
            raise ValueError(
                'SemanticAwareLoss takes one tensor per side, got '
                f'{type(student_feat).__name__} and '
                f'{type(teacher_feat).__name__}; distill one stage per '
                'distill term.')
        self.check_shapes(student_feat, teacher_feat)
        with full_precision(student_feat):
            student_feat, t = as_float32(student_feat, teacher_feat.detach())
            loss = self._loss(student_feat, t, data_samples)
        return self.loss_weight * loss

    def _loss(self, student_feat: Tensor, t: Tensor,
              data_samples: Optional[Sequence]) -> Tensor:
        loss = self.dist_weight * F.mse_loss(student_feat,
                                             t.to(student_feat.dtype))
        if data_samples is not None:
            labels = labels_from_data_samples(data_samples,
                                              student_feat.device)
            if labels.shape[0] != student_feat.shape[0]:
                raise ValueError(
                    f'SemanticAwareLoss: {labels.shape[0]} labels for a '
                    f'batch of {student_feat.shape[0]} features')
            if labels.numel() and (labels.min() < 0
                                   or labels.max() >= self.num_classes):
                raise ValueError(
                    f'SemanticAwareLoss: labels {labels.tolist()} outside '
                    f'[0, {self.num_classes}); set num_classes to the '
                    "dataset's number of classes.")
            logits = self.fc(student_feat.to(self.fc.weight.dtype))
            loss = loss + self.cls_weight * F.cross_entropy(
                logits.float(), labels)
        return loss
