"""CWD: KL divergence of per-channel spatial distributions."""
import torch.nn.functional as F
from torch import Tensor

from mmkd_channel.registry import MODELS
from .base import BaseDistillLoss
from .kd_loss import check_tau


@MODELS.register_module()
class ChannelWiseDivergence(BaseDistillLoss):
    """Channel-wise distillation (CWD) for dense prediction.

    Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction",
    ICCV 2021 (https://arxiv.org/abs/2011.13256). Each channel ``c`` of
    each sample ``n`` becomes a distribution over the ``H * W`` positions,
    ``p(n, c) = softmax(x[n, c].flatten() / tau)``, and::

        loss = loss_weight * tau**2 / (N * C)
               * sum_{n, c} KL(p_T(n, c) || p_S(n, c))

    Student and teacher must have the same channels and spatial size; put a
    connector (e.g. ``ConvBNConnector``) on the student where they differ.
    The authors use ``tau=1`` with weight 3-5 on segmentation logits and
    5-10 on FPN levels.

    Args:
        tau (float): Softmax temperature, > 0.
        loss_weight (float): Weight of the loss.

    Examples:
        >>> import torch
        >>> loss = ChannelWiseDivergence(tau=1.0, loss_weight=3.0)
        >>> x = torch.randn(2, 19, 8, 16)
        >>> loss(x, x)
        tensor(0.)
        >>> loss(torch.zeros(2, 19, 8, 16), x) > 0
        tensor(True)
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.tau = check_tau(tau, 'ChannelWiseDivergence')

    def check_shapes(self, student_feat: Tensor, teacher_feat: Tensor) -> None:
        """Both sides ``(N, C, H, W)`` with equal ``C`` and ``H, W``."""
        s, t = tuple(student_feat.shape), tuple(teacher_feat.shape)
        if len(s) != 4 or len(t) != 4:
            raise ValueError('ChannelWiseDivergence expects (N, C, H, W) '
                             f'features, got student {s} and teacher {t}')
        if s[1] != t[1]:
            raise ValueError(
                'ChannelWiseDivergence compares channel c of the student '
                'with channel c of the teacher, so the channel counts must '
                f'match: student has {s[1]}, teacher {t[1]} (shapes {s} and '
                f'{t}). Add connector=dict(type=\'ConvBNConnector\', '
                f'in_channels={s[1]}, out_channels={t[1]}).')
        if s[2:] != t[2:]:
            raise ValueError(
                'ChannelWiseDivergence needs the same spatial size on both '
                f'sides: student {s[2]}x{s[3]}, teacher {t[2]}x{t[3]} '
                f'(shapes {s} and {t}). Distill modules of the same stride '
                'or resize one side in a connector.')
        super().check_shapes(student_feat, teacher_feat)

    def loss_single(self, student_feat: Tensor,
                    teacher_feat: Tensor) -> Tensor:
        n, c = student_feat.shape[:2]
        log_p_s = F.log_softmax(student_feat.flatten(2) / self.tau, dim=2)
        log_p_t = F.log_softmax(
            teacher_feat.detach().flatten(2) / self.tau, dim=2)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
        return self.tau**2 * kl / (n * c)
