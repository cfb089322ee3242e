"""What to do when a loss becomes NaN or inf: stop (default) or skip."""
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from mmkd_channel.registry import HOOKS
from .utils import get_distiller


@HOOKS.register_module()
class DistillNaNHook(Hook):
    """Skip, instead of stopping at, steps whose losses are not finite.

    The check itself lives in ``FeatureDistiller.forward``: it is the last
    place that still knows each loss term by name and runs before
    ``backward`` and the optimizer step (a hook's ``after_train_iter`` only
    sees the outputs after the parameters were already updated). By default
    (no hook, or ``skip=False``) a NaN / inf term raises
    ``FloatingPointError`` naming the term, so the run stops before the
    update and the last checkpoint is the last good state.

    With ``skip=True`` the distiller instead returns exact zeros for every
    loss of that step (all ranks agree through an all-reduce, so DDP stays
    in sync and every gradient is zero) and this hook makes the optimizer
    wrapper skip its ``step()`` for that iteration, so momentum, weight
    decay and the AMP loss scale are left untouched too. Skipped steps are
    logged as warnings and counted in ``train/skipped_steps``.

    Args:
        skip (bool): Skip non-finite steps instead of stopping the run.
            Defaults to False.

    Examples:
        >>> custom_hooks = [dict(type='mmkd_channel.DistillNaNHook',
        ...                      skip=True)]
    """

    priority = 'HIGH'

    def __init__(self, skip: bool = False) -> None:
        self.skip = bool(skip)
        self.skipped = 0

    def before_train(self, runner) -> None:
        """Set the distiller's policy and guard the optimizer step."""
        distiller = get_distiller(runner, 'DistillNaNHook')
        distiller.nonfinite_policy = 'skip' if self.skip else 'raise'
        if not self.skip:
            return
        wrappers = runner.optim_wrapper
        if isinstance(wrappers, OptimWrapperDict):
            wrappers = list(wrappers.values())
        else:
            wrappers = [wrappers]
        for wrapper in wrappers:
            if getattr(wrapper.step, '_mmkd_nan_guard', False):
                continue
            wrapper.step = self._guarded(wrapper.step, distiller)

    @staticmethod
    def _guarded(step, distiller):

        def guarded_step(*args, **kwargs):
            if distiller.skipped_step:
                return None
            return step(*args, **kwargs)

        guarded_step._mmkd_nan_guard = True
        return guarded_step

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Count and report a skipped step."""
        if not self.skip:
            return
        distiller = get_distiller(runner, 'DistillNaNHook')
        if not distiller.skipped_step:
            return
        self.skipped += 1
        terms = distiller.nonfinite_terms or ['a loss on another rank']
        runner.logger.warning(
            f'DistillNaNHook: iteration {runner.iter + 1} skipped, not '
            f'finite: {", ".join(terms)}; {self.skipped} step(s) skipped '
            'so far.')
        distiller.skipped_step = False
        runner.message_hub.update_scalar('train/skipped_steps', self.skipped)
