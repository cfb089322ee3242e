"""What ``Runner.resume`` and ``Runner.load_checkpoint`` check and restore.

:func:`patch_runner` (applied when :mod:`mmkd_channel` is imported, so it
holds for the hosts' own ``tools/train.py`` with ``custom_imports`` too)
wraps two MMEngine methods:

* ``Runner.resume`` reads the checkpoint with the strict reader; an
  auto-resume whose ``last_checkpoint`` record is empty, dangling or names
  an unreadable file falls back to the newest loadable checkpoint of the
  work dir (logged); afterwards the train sampler (and the data loader's
  worker seeds) take the seed of the resumed run. MMEngine restores that
  seed only after the sampler was built with a freshly drawn one when
  ``randomness=dict(seed=None)`` (the hosts' default), which changes the
  shuffle order after a resume.
* ``Runner.load_checkpoint`` (``load_from`` and resume) refuses a
  checkpoint that covers less than half of the model's weights, with the
  counts, instead of training from scratch with a warning.
"""
import contextvars
import functools
import glob
import os.path as osp
import re
from typing import Any, Optional

import torch

from .loaders import resuming
from .safe_load import (NotACheckpointError, check_checkpoint_file,
                        safe_torch_load)

_LOADING: contextvars.ContextVar = contextvars.ContextVar(
    'mmkd_loading', default=None)


def newest_loadable_checkpoint(work_dir: str,
                               exclude: Optional[str] = None) -> Optional[str]:
    """The most recently written ``*.pth`` of ``work_dir`` that loads."""
    paths = [
        p for p in glob.glob(osp.join(work_dir, '*.pth'))
        if exclude is None or osp.abspath(p) != osp.abspath(exclude)
    ]
    for path in sorted(paths, key=osp.getmtime, reverse=True):
        try:
            ckpt = safe_torch_load(path, map_location='cpu')
        except Exception:
            continue
        if isinstance(ckpt, dict) and 'meta' in ckpt:
            return path
    return None


def _auto_resume_target(runner, filename: Optional[str]) -> Optional[str]:
    """``filename`` from ``last_checkpoint``, or a loadable fallback."""
    record = osp.join(runner.work_dir, 'last_checkpoint')
    problem = None
    if not filename:
        problem = f'{record} is empty'
    elif '://' not in filename:
        try:
            check_checkpoint_file(filename)
        except FileNotFoundError:
            problem = f'{record} names {filename!r}, which does not exist'
        except NotACheckpointError as e:
            problem = f'{record} names a file that cannot be loaded ({e})'
    if problem is None:
        return filename
    newest = newest_loadable_checkpoint(runner.work_dir, exclude=filename)
    if newest is None:
        raise FileNotFoundError(
            f'cannot resume: {problem}, and {runner.work_dir!r} holds no '
            f'loadable checkpoint. Delete {record!r} to start from scratch, '
            'or give the checkpoint to resume from: --resume PATH.')
    runner.logger.warning(
        f'{problem}; resuming from the newest loadable checkpoint of the '
        f'work dir instead: {newest}')
    return newest


def sync_sampler_seed(runner) -> bool:
    """Give the train sampler and workers the (resumed) ``runner.seed``.

    Returns:
        bool: Whether anything changed.
    """
    seed = runner.seed
    randomness = getattr(runner, '_randomness_cfg', None) or {}
    if seed is None or randomness.get('diff_rank_seed', False):
        return False  # per-rank samplers draw their own seeds
    loop = runner.train_loop
    loader = getattr(loop, 'dataloader', None)
    if loader is None:
        return False
    changed = False
    batch_sampler = getattr(loader, 'batch_sampler', None)
    for sampler in (getattr(loader, 'sampler',
                            None), getattr(batch_sampler, 'sampler', None)):
        if sampler is None or getattr(sampler, 'seed', seed) == seed:
            continue
        sampler.seed = seed
        if hasattr(sampler, '_indices_of_rank') and hasattr(
                sampler, 'indices'):  # InfiniteSampler: a started generator
            sampler.indices = sampler._indices_of_rank()
        changed = True
    fn = getattr(loader, 'worker_init_fn', None)
    worker_seed = fn.keywords.get('seed') if isinstance(
        fn, functools.partial) else None
    if worker_seed not in (None, seed):
        loader.worker_init_fn = functools.partial(
            fn.func, *fn.args, **dict(fn.keywords, seed=seed))
        changed = True
    if changed and hasattr(loop, 'dataloader_iterator'):
        # iteration-based loops made their iterator before the resume
        if getattr(loader, '_iterator', None) is not None:
            loader._iterator = None  # persistent workers of the old seed
        loop.dataloader_iterator = type(loop.dataloader_iterator)(loader)
    if changed:
        runner.logger.info(
            f'train sampler and data workers re-seeded with {seed}, the '
            'seed of the resumed run')
    return changed


def key_coverage_error(model: torch.nn.Module, checkpoint: Any,
                       revise_keys: list, source: str) -> Optional[str]:
    """Why ``checkpoint`` does not fit ``model``, or None if half or more
    of the model's weights match (same key and shape)."""
    sd = checkpoint
    if isinstance(sd, dict) and 'state_dict' in sd:
        sd = sd['state_dict']
    own = model.state_dict()
    if not isinstance(sd, dict) or not own:
        return None
    keys = {}
    for k, v in sd.items():
        for p, r in revise_keys:
            k = re.sub(p, r, k)
        keys[k] = v
    matched = [
        k for k, v in own.items() if isinstance(keys.get(k), torch.Tensor)
        and tuple(keys[k].shape) == tuple(v.shape)
    ]
    if 2 * len(matched) >= len(own):
        return None
    missing = [k for k in own if k not in keys]
    unexpected = [k for k in keys if k not in own]
    shapes = [k for k in own if k in keys and k not in matched]
    hint = ('Is it a checkpoint of another architecture, or of another '
            'model than this config builds?')
    if any(k.startswith('student.')
           for k in own) and not any(k.startswith('student.') for k in keys):
        hint = ('It looks like a checkpoint of the student model alone: '
                "initialise the student with init_cfg=dict(type='Pretrained'"
                ', checkpoint=...) in its model dict instead.')
    return (f'{source}: only {len(matched)} of the model\'s {len(own)} '
            f'weights match the checkpoint ({len(keys)} keys): '
            f'{len(missing)} of the model\'s keys are missing (e.g. '
            f'{missing[:3]}), {len(unexpected)} checkpoint keys are '
            f'unexpected (e.g. {unexpected[:3]}), {len(shapes)} have other '
            f'shapes. {hint}')


def patch_runner() -> None:
    """Wrap ``Runner.resume`` and ``Runner.load_checkpoint`` (once)."""
    from mmengine.runner import Runner
    from mmengine.runner import runner as runner_module
    if getattr(Runner.resume, '_mmkd_patched', False):
        return
    original_resume = Runner.resume
    original_load = Runner.load_checkpoint
    original_to_model = runner_module._load_checkpoint_to_model

    @functools.wraps(original_resume)
    def resume(self, filename, *args, **kwargs):
        if self._resume and self._load_from is None:  # from last_checkpoint
            filename = _auto_resume_target(self, filename)
        with resuming():
            result = original_resume(self, filename, *args, **kwargs)
        sync_sampler_seed(self)
        return result

    @functools.wraps(original_load)
    def load_checkpoint(self, filename, *args, **kwargs):
        token = _LOADING.set(str(filename))
        try:
            return original_load(self, filename, *args, **kwargs)
        finally:
            _LOADING.reset(token)

    @functools.wraps(original_to_model)
    def load_checkpoint_to_model(model,
                                 checkpoint,
                                 strict=False,
                                 logger=None,
                                 revise_keys=[(r'^module\.', '')]):
        source = _LOADING.get()
        if source is not None:
            # MMEngine's load_state_dict loads a wrapper's or a TTA model's
            # keys into its `module`: count the keys of what it loads into
            from mmengine.model import BaseTTAModel, is_model_wrapper
            target = model
            while is_model_wrapper(target) or isinstance(target, BaseTTAModel):
                target = target.module
            error = key_coverage_error(target, checkpoint, revise_keys,
                                       f'checkpoint {source!r}')
            if error is not None:
                raise ValueError(error)
        return original_to_model(model, checkpoint, strict, logger,
                                 revise_keys)

    resume._mmkd_patched = True
    Runner.resume = resume
    Runner.load_checkpoint = load_checkpoint
    runner_module._load_checkpoint_to_model = load_checkpoint_to_model
