"""What the timm and Hugging Face teacher tests share: their ResNet-18
student and its ``layer4`` feature pair, one fixed mmpretrain batch, and two
training steps that must leave the teacher as it was."""
from typing import List, Optional, Sequence

import torch
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

NUM_CLASSES = 4


def resnet18(data_preprocessor: Optional[dict] = None) -> dict:
    """The mmpretrain ResNet-18 student, ``NUM_CLASSES`` classes."""
    return dict(
        type='mmpretrain.ImageClassifier',
        data_preprocessor=data_preprocessor,
        backbone=dict(type='ResNet', depth=18),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=512,
            loss=dict(type='CrossEntropyLoss')))


def layer4_pair(teacher: str,
                channels: int,
                teacher_connector: Optional[dict] = None) -> dict:
    """L2 between the student's ``layer4`` (512 channels), resized to the
    teacher's grid, and the teacher feature at ``teacher``."""
    return dict(
        student='backbone.layer4',
        teacher=teacher,
        connector=dict(
            type='ChannelWiseTransform',
            in_channels=512,
            out_channels=channels,
            align='bilinear'),
        teacher_connector=teacher_connector,
        loss=dict(type='FeatureL2Loss'))


def batch() -> dict:
    """Two 64-px 0-255 images with labels 1 and 3, the same on every call."""
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(2, 3, 64, 64, generator=g) * 255,
        data_samples=[DataSample().set_gt_label(i) for i in (1, 3)])


def train_two_steps(model, loss_keys: Sequence[str]) -> List[dict]:
    """Trains ``model`` for two SGD steps on :func:`batch`.

    Asserts the named losses and the total are finite at each step, and
    that the teacher stays in eval mode, unchanged and out of the
    ``state_dict``.

    Returns:
        list[dict]: the log of each step, for the caller's own checks.
    """
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    teacher_before = {
        k: v.clone()
        for k, v in model.teacher.state_dict().items()
    }
    model.train()
    logs = []
    for _ in range(2):
        log = model.train_step(batch(), optim)
        for key in (*loss_keys, 'loss'):
            assert torch.isfinite(log[key]), key
        logs.append(log)
    assert not model.teacher.training
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not any(k.startswith('teacher') for k in model.state_dict())
    return logs
