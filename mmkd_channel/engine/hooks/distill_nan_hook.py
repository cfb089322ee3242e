"""Keep NaN / inf out of the weights: stop (default) or skip such steps."""
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, OptimWrapperDict

from mmkd_channel.registry import HOOKS


def nonfinite_grads(optimizer: torch.optim.Optimizer,
                    names: Dict[int, str]) -> Optional[List[str]]:
    """Parameters of ``optimizer`` whose gradient holds NaN or inf.

    The decision is all-reduced, so every process of a distributed run
    agrees (and skips or stops at the same step).

    Returns:
        list[str] | None: None if every gradient on every rank is finite,
        else the names of this rank's non-finite ones (possibly empty when
        another rank had them).
    """
    params = [
        p for group in optimizer.param_groups for p in group['params']
        if p.grad is not None
    ]
    bad = False
    if params:
        flags = torch.stack([torch.isfinite(p.grad).all() for p in params])
        bad = not bool(flags.all())
    flag = torch.tensor([float(bad)])
    if get_world_size() > 1:
        all_reduce(flag)
    if flag.item() == 0:
        return None
    return [
        names.get(id(p), '?') for p in params
        if not bool(torch.isfinite(p.grad).all())
    ] if bad else []


@HOOKS.register_module()
class DistillNaNHook(Hook):
    """Never let a non-finite step reach the weights or a checkpoint.

    Two checks run before every optimizer step (the hook wraps the optimizer
    wrapper's ``step``, which ``update_params`` calls after ``backward``):

    * the loss terms, in ``FeatureDistiller.forward`` (the last place that
      knows each term by name, before ``backward``);
    * the gradients of every parameter the optimizer updates (a finite
      loss can still have NaN / inf gradients), all-reduced under DDP.

    By default (``skip=False``) a failing check raises
    ``FloatingPointError`` before the update: the weights are those of the
    last good step. With ``skip=True`` the step is skipped instead (no
    update, momentum and weight decay untouched, logged as a warning and
    counted in ``train/skipped_steps``), and the run stops after
    ``max_consecutive_skips`` skipped steps in a row, since a run that
    skips every step trains nothing. Under
    ``AmpOptimWrapper`` the gradient check is left to its loss scaler,
    which skips overflowing steps by design. Independently, ``mmkd_channel``
    refuses to save a checkpoint whose weights are not finite.

    ``tools/train.py`` adds this hook (``skip=False``) unless the config
    has it. It also works for models that are not a ``FeatureDistiller``
    (the gradient check only).

    Args:
        skip (bool): Skip non-finite steps instead of stopping the run.
            Defaults to False.
        max_consecutive_skips (int): With ``skip=True``, stop after this
            many skipped steps in a row. Defaults to 3.
        check_grads (bool): Check the gradients too. Defaults to True.

    Examples:
        >>> custom_hooks = [dict(type='mmkd_channel.DistillNaNHook',
        ...                      skip=True, max_consecutive_skips=5)]
    """

    priority = 'HIGH'

    def __init__(self,
                 skip: bool = False,
                 max_consecutive_skips: int = 3,
                 check_grads: bool = True) -> None:
        if not isinstance(max_consecutive_skips, int) or isinstance(
                max_consecutive_skips, bool) or max_consecutive_skips < 1:
            raise ValueError('DistillNaNHook: max_consecutive_skips must be '
                             f'an int >= 1, got {max_consecutive_skips!r}')
        self.skip = bool(skip)
        self.max_consecutive_skips = max_consecutive_skips
        self.check_grads = bool(check_grads)
        self.skipped = 0
        self.consecutive = 0
        self._reason: Optional[str] = None
        self._stepped = False
        self.distiller = None

    def before_train(self, runner) -> None:
        """Set the distiller's policy and guard the optimizer step."""
        from mmkd_channel.models.distillers import FeatureDistiller
        model = getattr(runner.model, 'module', runner.model)
        if isinstance(model, FeatureDistiller):
            self.distiller = model
            model.nonfinite_policy = 'skip' if self.skip else 'raise'
        wrappers = runner.optim_wrapper
        if isinstance(wrappers, OptimWrapperDict):
            wrappers = list(wrappers.values())
        else:
            wrappers = [wrappers]
        names = {id(p): n for n, p in runner.model.named_parameters()}
        for wrapper in wrappers:
            if not getattr(wrapper.step, '_mmkd_nan_guard', False):
                wrapper.step = self._guarded(wrapper, runner, names)

    def _guarded(self, wrapper, runner, names: Dict[int, str]):
        step = wrapper.step
        check = self.check_grads and not isinstance(wrapper, AmpOptimWrapper)

        def guarded_step(*args, **kwargs):
            distiller = self.distiller
            if distiller is not None and distiller.skipped_step:
                terms = distiller.nonfinite_terms or ['a loss on another rank']
                self._reason = f'not finite: {", ".join(terms)}'
                return None
            if check:
                bad = nonfinite_grads(wrapper.optimizer, names)
                if bad is not None:
                    if not self.skip:
                        raise FloatingPointError(
                            self._grad_message(runner, bad))
                    self._reason = ('non-finite gradients of '
                                    f'{_describe(bad)}')
                    return None
            self._stepped = True
            return step(*args, **kwargs)

        guarded_step._mmkd_nan_guard = True
        return guarded_step

    def _grad_message(self, runner, bad: List[str]) -> str:
        loss = ('the loss terms were finite; '
                if self.distiller is not None else '')
        record = osp.join(runner.work_dir, 'last_checkpoint')
        last = ''
        if osp.isfile(record):
            with open(record) as f:
                last = f'; the latest is {f.read().strip()}'
        return (
            f'DistillNaNHook: iteration {runner.iter + 1} has non-finite '
            f'(NaN/inf) gradients in {_describe(bad)} ({loss}checked after '
            'backward, before the optimizer step). The step was not taken '
            f'and the run stops: the weights are those after iteration '
            f'{runner.iter}, and checkpoints with non-finite weights are '
            f'never written{last}. Lower the learning rate or the loss '
            'weights, clip gradients (optim_wrapper.clip_grad), or skip such '
            "steps: custom_hooks=[dict(type='mmkd_channel.DistillNaNHook', "
            'skip=True)].')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Count and report a skipped step; stop after too many."""
        reason, stepped = self._reason, self._stepped
        self._reason, self._stepped = None, False
        if self.distiller is not None:
            self.distiller.skipped_step = False
        if reason is None:
            if stepped:
                self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        runner.message_hub.update_scalar('train/skipped_steps', self.skipped)
        runner.logger.warning(
            f'DistillNaNHook: iteration {runner.iter + 1} skipped ({reason}); '
            f'{self.skipped} step(s) skipped so far, {self.consecutive} in a '
            'row.')
        if self.consecutive >= self.max_consecutive_skips:
            raise FloatingPointError(
                f'DistillNaNHook: {self.consecutive} steps in a row were '
                f'skipped (the last: iteration {runner.iter + 1}, {reason}); '
                'the run stops, since it no longer trains. No skipped step '
                'changed the weights, and checkpoints with non-finite '
                'weights are never written. Lower the learning rate or the '
                'loss weights, check the data and the teacher checkpoint, or '
                'raise max_consecutive_skips.')


def _describe(names: List[str]) -> str:
    if not names:
        return 'parameters on another rank'
    return f'{len(names)} parameter(s), e.g. {names[:5]}'
