"""Make every epoch's (and iteration's) random stream depend on the seed
and the position in training only."""
import random
from typing import Any, Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from mmkd_channel.registry import HOOKS


class _SeededBatches:
    """Re-seeds every generator from ``(seed, i)`` before fetching batch i.

    Wraps an iteration-based loop's ``dataloader_iterator``. A resumed loop
    first fetches (and drops) the batches it already trained on, so batch i
    is always drawn, and trained on, from the same random state.
    """

    def __init__(self, iterator: Any, seed_fn) -> None:
        self.iterator = iterator
        self.seed_fn = seed_fn
        self.count = 0

    def __iter__(self) -> '_SeededBatches':
        return self

    def __next__(self) -> Any:
        self.seed_fn(self.count)
        self.count += 1
        return next(self.iterator)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Re-seed Python, NumPy and torch from the position in training.

    MMEngine does not store random-number-generator states in checkpoints;
    on resume it only re-applies the initial seed. Data augmentation
    (flips, crops), samplers inside the model (RPN / RoI sampling) and
    dropout after a resume therefore draw other numbers than the
    uninterrupted run, and the weights drift apart. With this hook the
    random stream of epoch ``e`` is a function of ``(seed, e)`` alone, and
    in iteration-based loops the stream of iteration ``i`` (its batch and
    its step) a function of ``(seed, i)`` (plus the rank with
    ``randomness.diff_rank_seed``), so a resumed run replays exactly what
    the uninterrupted run does: with deterministic kernels (CPU, or
    ``randomness.deterministic=True`` on GPU) the weights agree bitwise.
    Data loader workers (``num_workers > 0``) draw from their own
    generators, seeded by MMEngine per worker; augmentation done there is
    exact after a resume at an epoch boundary only.

    ``tools/train.py`` adds this hook unless the config already has it.

    Args:
        seed (int, optional): Base seed; defaults to the run's seed
            (``runner.seed``, which MMEngine restores on resume).
    """

    priority = 'VERY_HIGH'

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed

    def _seed_all(self, runner, offset: int) -> None:
        seed = self.seed if self.seed is not None else runner.seed
        if seed is None:
            return
        randomness = getattr(runner, '_randomness_cfg', None) or {}
        if randomness.get('diff_rank_seed', False):
            seed = seed + runner.rank * 100003
        stream_seed = (int(seed) * 1000003 + offset) % (2**32)
        random.seed(stream_seed)
        np.random.seed(stream_seed)
        torch.manual_seed(stream_seed)  # also seeds every CUDA device

    def before_train(self, runner) -> None:
        """Seed every batch of an iteration-based loop."""
        loop = runner.train_loop
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is None or isinstance(iterator, _SeededBatches):
            return
        # offsets above 2**31 never collide with the epoch streams
        loop.dataloader_iterator = _SeededBatches(
            iterator, lambda i: self._seed_all(runner, 2**31 + i))

    def before_train_epoch(self, runner) -> None:
        """Seed all generators from ``(seed, epoch)``."""
        self._seed_all(runner, runner.epoch)
