"""Make every epoch's random stream depend on (seed, epoch) only."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from mmkd_channel.registry import HOOKS


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Re-seed Python, NumPy and torch at the start of every training epoch.

    MMEngine does not store random-number-generator states in checkpoints;
    on resume it only re-applies the initial seed. Data augmentation
    (flips, crops), samplers inside the model (RPN / RoI sampling) and
    dropout after a resume therefore draw other numbers than the
    uninterrupted run, and the weights drift apart. With this hook the
    random stream of epoch ``e`` is a function of ``(seed, e)`` alone
    (plus the rank with ``randomness.diff_rank_seed``), so a run resumed at
    an epoch boundary replays exactly what the uninterrupted run does:
    with deterministic kernels (CPU, or ``randomness.deterministic=True``
    on GPU) the weights agree bitwise.

    ``tools/train.py`` adds this hook unless the config already has it.
    For iteration-based loops (one long "epoch") it only seeds the start;
    there a resume is exact up to data augmentation.

    Args:
        seed (int, optional): Base seed; defaults to the run's seed
            (``runner.seed``, which MMEngine restores on resume).
    """

    priority = 'VERY_HIGH'

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed

    def before_train_epoch(self, runner) -> None:
        """Seed all generators from ``(seed, epoch)``."""
        seed = self.seed if self.seed is not None else runner.seed
        if seed is None:
            return
        randomness = getattr(runner, '_randomness_cfg', None) or {}
        if randomness.get('diff_rank_seed', False):
            seed = seed + runner.rank * 100003
        epoch_seed = (int(seed) * 1000003 + runner.epoch) % (2**32)
        random.seed(epoch_seed)
        np.random.seed(epoch_seed)
        torch.manual_seed(epoch_seed)  # also seeds every CUDA device
