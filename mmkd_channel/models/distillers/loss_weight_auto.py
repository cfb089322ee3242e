"""``loss_weight='auto'``: weights calibrated to a ratio of the task loss.

A term whose ``distill['<name>'].loss.loss_weight`` is ``'auto'`` is built
with weight 1 (its raw value) and multiplied by a weight that
:class:`LossWeightCalibration` chooses over the first ``iters`` training
steps: ``target_ratio * stat(task) / stat(raw)``, ``stat`` the median (or
mean) over those steps of the task loss (the sum of every non-distill
``loss*`` term, as MMEngine's ``parse_losses`` sums them) and of the term's
raw value. Then the weight is frozen.

During calibration the term is weighted by the same formula over the steps
seen so far, the current one included: from the first step on it is
``target_ratio`` times the task loss (on the first step exactly), so the
connectors train from the start and a raw term a billion times the task
loss never reaches the gradient, while the weight does not rest on one
batch. The statistics and the weight are buffers (``state_dict`` keys
``loss_weight_calibration.*``), so checkpoints carry them: a resumed run
keeps the frozen weight, and a run stopped during calibration resumes it
with the steps it had seen. Under DDP each step's values are averaged over
the ranks before they are stored, so every rank holds the same weights.
"""
import math
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.logging import MMLogger
from torch import Tensor, nn

AUTO = 'auto'
#: ``loss_weight_calibration`` keys and their defaults.
CALIBRATION_DEFAULTS = dict(target_ratio=1.0, iters=10, statistic='median')
STATISTICS = ('median', 'mean')
#: The weight of a term whose statistics give no ratio (raw or task 0).
FALLBACK_WEIGHT = 1.0


def split_auto_weights(specs: dict) -> List[str]:
    """Names of the ``distill`` entries with ``loss_weight='auto'``.

    Their loss configs get ``loss_weight=1.0`` (in place: ``specs`` is the
    distiller's own normalised copy), so the loss returns its raw value.
    Any other string is an error naming the key.
    """
    names = []
    for name, spec in specs.items():
        loss = spec.get('loss')
        if not isinstance(loss, dict):
            continue
        weight = loss.get('loss_weight')
        if not isinstance(weight, str):
            continue
        if weight != AUTO:
            raise ValueError(
                f"distill['{name}'].loss.loss_weight={weight!r}: expected "
                f"a number >= 0 or 'auto' (calibrated to a ratio of the task "
                "loss over the first iterations, see the distiller's "
                "loss_weight_calibration). E.g. loss_weight='auto' or "
                'loss_weight=1.0.')
        spec['loss'] = dict(loss, loss_weight=1.0)
        names.append(name)
    return names


def check_calibration(cfg: Optional[dict], names: List[str]) -> dict:
    """``loss_weight_calibration`` completed with its defaults.

    Raises a ``ValueError`` / ``TypeError`` naming the auto terms and the
    offending key when a value is not usable.
    """
    terms = ', '.join(f"distill['{n}'].loss.loss_weight='auto'" for n in names)
    if cfg is not None and not names:
        raise ValueError(
            'FeatureDistiller: loss_weight_calibration is given but no '
            "distill entry has loss_weight='auto', so nothing would be "
            "calibrated. Set distill['<name>'].loss.loss_weight='auto' on "
            'the terms to calibrate, or drop loss_weight_calibration.')
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise TypeError(
            f'FeatureDistiller: loss_weight_calibration must be a dict such '
            f'as dict(target_ratio=1.0, iters=10) (for {terms}), got {cfg!r}')
    unknown = sorted(set(cfg) - set(CALIBRATION_DEFAULTS), key=str)
    if unknown:
        raise KeyError(
            f'FeatureDistiller: loss_weight_calibration has unknown keys '
            f'{unknown} (for {terms}); allowed: '
            f'{sorted(CALIBRATION_DEFAULTS)}')
    cfg = dict(CALIBRATION_DEFAULTS, **cfg)
    ratio, iters = cfg['target_ratio'], cfg['iters']
    where = f'(for {terms})'
    if (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
            or not math.isfinite(ratio) or ratio <= 0):
        raise ValueError(
            f'FeatureDistiller: loss_weight_calibration.target_ratio='
            f'{ratio!r} {where}: the weighted term over the task loss must '
            'be a finite number > 0, e.g. target_ratio=1.0. To switch a '
            'term off, give it loss_weight=0 instead of auto.')
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(
            f'FeatureDistiller: loss_weight_calibration.iters={iters!r} '
            f'{where}: the number of training steps to calibrate over must '
            'be an integer >= 1, e.g. iters=10.')
    if cfg['statistic'] not in STATISTICS:
        raise ValueError(
            f'FeatureDistiller: loss_weight_calibration.statistic='
            f"{cfg['statistic']!r} {where}: expected one of {STATISTICS}.")
    cfg['target_ratio'] = float(ratio)
    return cfg


def _statistic(values: Tensor, how: str) -> Tensor:
    """Median (the mean of the two middle values for an even count) or mean
    over dim 0."""
    if how == 'mean':
        return values.mean(0)
    ordered = values.sort(0).values
    n = ordered.shape[0]
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _task_total(losses: dict) -> Tensor:
    """The sum MMEngine's ``parse_losses`` makes of the non-distill terms."""
    total = torch.zeros((), dtype=torch.float64)
    for key, value in losses.items():
        if 'loss' not in key or key.startswith('loss_distill_'):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, Tensor):
                total = total + v.detach().double().mean().cpu()
    return total


class LossWeightCalibration(nn.Module):
    """Chooses and holds the weights of the ``loss_weight='auto'`` terms.

    Args:
        names (list[str]): The ``distill`` entries with ``'auto'``.
        target_ratio (float): Weighted term / task loss after calibration.
        iters (int): Training steps (forward passes in ``loss`` mode)
            measured before the weights freeze.
        statistic (str): ``'median'`` (default) or ``'mean'`` over the
            steps, of the task loss and of each raw term.
    """

    def __init__(self,
                 names: List[str],
                 target_ratio: float = 1.0,
                 iters: int = 10,
                 statistic: str = 'median') -> None:
        super().__init__()
        self.names = list(names)
        self.target_ratio, self.iters = target_ratio, iters
        self.statistic = statistic
        f64 = dict(dtype=torch.float64)
        self.register_buffer('raw', torch.zeros(iters, len(names), **f64))
        self.register_buffer('task', torch.zeros(iters, **f64))
        self.register_buffer('count', torch.zeros((), dtype=torch.long))
        self.register_buffer('weight', torch.zeros(len(names), **f64))
        self._restored = False

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        saved = state_dict.get(prefix + 'raw')
        if saved is not None and saved.shape != self.raw.shape:
            # Another `iters` or another set of auto terms: the stored
            # steps do not fit these buffers, so calibrate afresh rather
            # than mix zeros into the statistics.
            MMLogger.get_current_instance().warning(
                "FeatureDistiller: the checkpoint's loss_weight='auto' "
                f'calibration has {saved.shape[1]} term(s) over '
                f'{saved.shape[0]} steps, this model {len(self.names)} over '
                f'{self.iters}; calibrating again.')
            for key in ('raw', 'task', 'count', 'weight'):
                state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._restored = True  # say once, at the next step, what came back

    @property
    def frozen(self) -> bool:
        return int(self.count) >= self.iters

    def weights(self) -> Dict[str, float]:
        """``name -> weight`` now (frozen or the running estimate)."""
        return {n: float(w) for n, w in zip(self.names, self.weight)}

    def forward(self, losses: dict, record: bool = True) -> dict:
        """Multiply each auto term of ``losses`` (raw values) by its weight,
        after recording this step when still calibrating and ``record``."""
        if self._restored:
            self._restored = False
            if int(self.count) > 0:
                self._announce_restored()
        if record and not self.frozen:
            self._record(losses)
        for i, name in enumerate(self.names):
            key = f'loss_distill_{name}'
            value = losses[key]
            losses[key] = value * self.weight[i].to(value.dtype)
        return losses

    def _record(self, losses: dict) -> None:
        raw = [
            losses[f'loss_distill_{n}'].detach().double().mean().cpu()
            for n in self.names
        ]
        step = torch.stack([_task_total(losses)] + raw)
        if get_world_size() > 1:  # the same statistics on every rank
            device = self.weight.device
            step = step.to(device)
            all_reduce(step, op='mean')
        step = step.to(self.task.device)
        if not bool(torch.isfinite(step).all()):
            return  # a non-finite step tells nothing about the scale
        i = int(self.count)
        self.task[i] = step[0]
        self.raw[i] = step[1:]
        self.count += 1
        weight, usable = self._estimate(i + 1)
        self.weight.copy_(weight)
        if self.frozen:
            self._announce_frozen(usable)

    def _estimate(self, n: int) -> tuple:
        """Weights from the first ``n`` recorded steps, and which of them
        came from a ratio (the others are ``FALLBACK_WEIGHT``)."""
        task = _statistic(self.task[:n], self.statistic)
        raw = _statistic(self.raw[:n], self.statistic)
        weight = self.target_ratio * task / raw
        usable = torch.isfinite(weight) & (raw > 0) & (task > 0)
        fallback = torch.full_like(weight, FALLBACK_WEIGHT)
        return torch.where(usable, weight, fallback), usable

    def _terms(self) -> str:
        n = min(int(self.count), self.iters)
        task = float(_statistic(self.task[:n], self.statistic))
        raw = _statistic(self.raw[:n], self.statistic)
        return f'task loss {task:.4g}; ' + ', '.join(
            f'loss_distill_{name}: raw {float(r):.4g}, loss_weight='
            f'{float(w):.4g}'
            for name, r, w in zip(self.names, raw, self.weight))

    def _announce_frozen(self, usable: Tensor) -> None:
        logger = MMLogger.get_current_instance()
        logger.info(
            f"FeatureDistiller: loss_weight='auto' calibrated over the "
            f'first {self.iters} steps ({self.statistic}) to '
            f'{self.target_ratio:g} x the task loss and frozen '
            f'(saved in checkpoints as loss_weight_calibration.weight): '
            f'{self._terms()}')
        for name, ok in zip(self.names, usable):
            if not bool(ok):
                logger.warning(
                    f"FeatureDistiller: distill['{name}'].loss.loss_weight="
                    "'auto' found no ratio to calibrate (the term's or the "
                    f'task loss\'s {self.statistic} over the first '
                    f'{self.iters} steps is 0); its weight is '
                    f'{FALLBACK_WEIGHT:g}. Give a number instead.')

    def _announce_restored(self) -> None:
        logger = MMLogger.get_current_instance()
        if self.frozen:
            logger.info("FeatureDistiller: loss_weight='auto' weights "
                        'restored from the checkpoint (frozen, not '
                        f'recalibrated): {self._terms()}')
        else:
            logger.info(
                "FeatureDistiller: loss_weight='auto' calibration resumed "
                f'at step {int(self.count) + 1} of {self.iters} with the '
                'steps stored in the checkpoint')
