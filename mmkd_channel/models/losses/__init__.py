from .base import BaseDistillLoss
from .feature_l2 import FeatureL2Loss

__all__ = ['BaseDistillLoss', 'FeatureL2Loss']
