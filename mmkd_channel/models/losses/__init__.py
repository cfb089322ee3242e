from .base import BaseDistillLoss
from .feature_l2 import FeatureL2Loss

__all__ = ['BaseDistillLoss', 'FeatureL2Loss']
from .channel_wise_divergence import ChannelWiseDivergence  # noqa: E402
from .kd_loss import KDLoss  # noqa: E402
from .loss_inputs import accepts_data_samples  # noqa: E402
from .loss_inputs import call_loss  # noqa: E402
from .loss_inputs import labels_from_data_samples  # noqa: E402
from .partial_l2 import PartialL2Loss  # noqa: E402
from .semantic_aware import SemanticAwareLoss  # noqa: E402

__all__ += [
    'ChannelWiseDivergence', 'KDLoss', 'PartialL2Loss', 'SemanticAwareLoss',
    'accepts_data_samples', 'call_loss', 'labels_from_data_samples'
]
