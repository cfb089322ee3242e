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
