"""Small host models for fast distiller unit tests (a conv net, BN, head)."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn


class ToyNeck(nn.Module):
    """Returns a tuple of two levels, like an FPN."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = self.conv(x)
        return (y, F.max_pool2d(y, 2))


@MODELS.register_module(force=True)
class ToyClassifier(BaseModel):
    """conv-bn-relu backbone, a 2-level neck, a linear head."""

    def __init__(self, width=8, num_classes=3, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width),
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.BatchNorm2d(width), nn.ReLU())
        self.neck = ToyNeck(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.neck(self.backbone(inputs))
        logits = self.head(feats[-1].mean((2, 3)))
        if mode == 'loss':
            labels = torch.as_tensor(data_samples, dtype=torch.long)
            return dict(loss_cls=F.cross_entropy(logits, labels))
        if mode == 'predict':
            return logits.argmax(1)
        return logits


def toy_cfg(width=8, num_classes=3):
    return dict(type='ToyClassifier', width=width, num_classes=num_classes)


def toy_cwt_distiller():
    """A width-8 toy student, a width-16 toy teacher and CWT + L2 on their
    necks (the connector's widths filled in by the build-time check)."""
    from mmkd_channel.models import FeatureDistiller
    return FeatureDistiller(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            f=dict(
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


class ToyData(torch.utils.data.Dataset):
    """Four 16-px images with labels 0-2, the same on every read."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(
            inputs=torch.rand(3, 16, 16, generator=g), data_samples=i % 3)


def toy_runner_cfg(model: dict, work_dir: str, train_cfg: dict, resume: bool,
                   experiment_name: str, **kwargs) -> dict:
    """A Runner config that trains ``model`` on :class:`ToyData` in order,
    batch 2, SGD with momentum (so a resume has optimizer state to restore);
    ``kwargs`` add to it (hooks, randomness)."""
    return dict(
        model=model,
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        resume=resume,
        experiment_name=experiment_name,
        **kwargs)


def randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters (the same on every
    call), so that folding a BN has work to do and folding it twice would
    show."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
