"""Log, once, how large each distillation term is against the task loss."""
import math
from typing import Dict, List, Sequence

from mmengine.logging import MMLogger
from torch import Tensor


def _total(value) -> float:
    values = value if isinstance(value, (list, tuple)) else [value]
    return sum(
        float(v.detach().float().sum()) for v in values
        if isinstance(v, Tensor))


class LossScaleMonitor:
    """Averages the first ``warmup`` steps' losses, then reports once.

    Each ``loss_distill_<name>`` is compared with the sum of the task
    losses (every other key containing ``loss``). The ratio is logged at
    INFO; outside ``[low, high]`` a WARNING names the ``loss_weight`` of
    ``distill['<name>'].loss`` to change and a value that would bring the
    ratio to 1. Terms weighted by ``loss_weight='auto'`` are reported
    without a warning: their weight is being (or was) chosen for a ratio.

    Args:
        warmup (int): Steps averaged before the report.
        low (float): Smallest ratio that is not reported as too small.
        high (float): Largest ratio that is not reported as too large.
    """

    def __init__(self,
                 warmup: int = 3,
                 low: float = 1e-2,
                 high: float = 1e2) -> None:
        self.warmup, self.low, self.high = warmup, low, high
        self.steps = 0
        self.sums: Dict[str, float] = {}
        self.done = False

    def update(self, losses: dict, pairs, auto: Sequence[str] = ()) -> None:
        """Add one step's losses; report after ``warmup`` steps.

        ``auto``: names of the terms with ``loss_weight='auto'``.
        """
        if self.done:
            return
        self.steps += 1
        for key, value in losses.items():
            if 'loss' in key:
                self.sums[key] = self.sums.get(key, 0.0) + _total(value)
        if self.steps >= self.warmup:
            self.done = True
            self.report(pairs, auto)

    def report(self, pairs, auto: Sequence[str] = ()) -> List[str]:
        """Log the ratios; return the warnings (for tests)."""
        logger = MMLogger.get_current_instance()
        mean = {k: v / self.steps for k, v in self.sums.items()}
        task = sum(v for k, v in mean.items() if 'loss_distill_' not in k)
        warnings = []
        lines = []
        for name, pair in pairs.items():
            value = mean.get(f'loss_distill_{name}')
            if value is None:
                continue
            ratio = value / task if task else math.inf
            lines.append(f'loss_distill_{name}={value:.4g} '
                         f'(x{ratio:.3g} the task loss'
                         f"{', loss_weight auto' if name in auto else ''})")
            if name in auto:
                continue
            if not math.isfinite(ratio) or not (self.low <= ratio <=
                                                self.high):
                weight = getattr(pair.loss, 'loss_weight', None)
                better = (f', e.g. loss_weight={weight / ratio:.3g} for a '
                          'ratio of 1'
                          if weight and ratio and math.isfinite(ratio) else '')
                warnings.append(
                    f'FeatureDistiller: loss_distill_{name} is {ratio:.3g} '
                    f'times the task loss ({task:.4g}) over the first '
                    f'{self.steps} steps, outside {self.low:g}..'
                    f'{self.high:g}: the term will '
                    f"{'barely matter' if ratio < self.low else 'dominate'}"
                    f". Change distill['{name}'].loss.loss_weight (now "
                    f'{weight}){better}.')
        if lines:
            logger.info(f'FeatureDistiller: over the first {self.steps} '
                        f'steps, task loss {task:.4g}; ' + ', '.join(lines))
        for w in warnings:
            logger.warning(w)
        return warnings
