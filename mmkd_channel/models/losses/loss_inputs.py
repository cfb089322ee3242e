"""Losses that need more than the two features: passing ``data_samples``.

Every loss is called as ``loss(student_feat, teacher_feat)``. A loss that
also needs the ground truth (SAKD's classification branch needs the image
labels) declares a parameter named ``data_samples`` in ``forward``; the
distiller then calls it as ``loss(student_feat, teacher_feat,
data_samples=data_samples)`` with the batch's data samples. Other losses
never see them.
"""
import inspect
from typing import Optional, Sequence

import torch
from torch import Tensor, nn


def accepts_data_samples(loss: nn.Module) -> bool:
    """Whether ``loss.forward`` has a parameter named ``data_samples``.

    ``**kwargs`` does not count: a loss opts in by naming the parameter.

    Examples:
        >>> from mmkd_channel.models import FeatureL2Loss, SemanticAwareLoss
        >>> accepts_data_samples(FeatureL2Loss())
        False
        >>> accepts_data_samples(SemanticAwareLoss(16, 100))
        True
    """
    try:
        params = inspect.signature(loss.forward).parameters
    except (TypeError, ValueError):
        return False
    return 'data_samples' in params


def call_loss(loss: nn.Module,
              student_feat,
              teacher_feat,
              data_samples: Optional[Sequence] = None) -> Tensor:
    """``loss(s, t)``, plus ``data_samples=`` if the loss takes them.

    Args:
        loss (nn.Module): The distillation loss.
        student_feat: Student feature (after its connector).
        teacher_feat: Teacher feature (after its connector).
        data_samples (list, optional): The batch's data samples, given to
            losses whose ``forward`` names a ``data_samples`` parameter.

    Returns:
        Tensor: The loss value.

    Examples:
        >>> import torch
        >>> from mmkd_channel.models import FeatureL2Loss
        >>> call_loss(FeatureL2Loss(), torch.ones(2, 3), torch.zeros(2, 3),
        ...           data_samples=[0, 1])
        tensor(1.)
    """
    if data_samples is not None and accepts_data_samples(loss):
        return loss(student_feat, teacher_feat, data_samples=data_samples)
    return loss(student_feat, teacher_feat)


def labels_from_data_samples(data_samples: Sequence,
                             device: Optional[torch.device] = None) -> Tensor:
    """Single-label class indices ``(N,)`` of a batch of data samples.

    Reads mmpretrain's ``data_sample.gt_label`` (a one-element tensor);
    plain ints or 0-d tensors are taken as they are.

    Args:
        data_samples (list): One entry per image.
        device (torch.device, optional): Device of the returned tensor.

    Returns:
        Tensor: ``int64`` labels of shape ``(N,)``.

    Raises:
        ValueError: if a sample has no image-level single label (mmdet and
            mmseg samples, multi-label or mixed/soft labels).

    Examples:
        >>> import torch
        >>> from mmpretrain.structures import DataSample
        >>> samples = [DataSample().set_gt_label(3), DataSample(
        ...     ).set_gt_label(7)]
        >>> labels_from_data_samples(samples)
        tensor([3, 7])
    """
    labels = []
    for i, sample in enumerate(data_samples):
        label = getattr(sample, 'gt_label', sample)
        if isinstance(label, int) and not isinstance(label, bool):
            labels.append(label)
            continue
        if isinstance(label, Tensor) and label.numel() == 1 and (
                not label.is_floating_point()):
            labels.append(int(label.item()))
            continue
        raise ValueError(
            f'data_samples[{i}] has no single class label: expected '
            "mmpretrain's data_sample.gt_label (one integer), got "
            f'{type(sample).__name__} with gt_label={label!r}. Losses '
            'that use labels (SemanticAwareLoss) need single-label '
            'classification data; mixup/cutmix soft labels are not '
            'supported.')
    return torch.as_tensor(labels, dtype=torch.long, device=device)
