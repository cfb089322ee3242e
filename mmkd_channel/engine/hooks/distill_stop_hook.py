"""Stop distilling after a given epoch or iteration."""
from typing import Optional

from mmengine.hooks import Hook

from mmkd_channel.registry import HOOKS
from .utils import get_distiller


@HOOKS.register_module()
class DistillStopHook(Hook):
    """Train the student alone from ``stop_epoch`` or ``stop_iter`` on.

    From then on the teacher no longer runs and every
    ``loss_distill_<name>`` is an exact zero (still connected to the
    connector parameters, so DDP sees all parameters used and the logs keep
    their keys). Epochs and iterations count from 0, as
    ``runner.epoch`` / ``runner.iter``: ``stop_epoch=2`` distils in the
    first two epochs, ``stop_iter=100`` in the first 100 iterations. The
    state follows from the counters, so a resumed run is consistent.

    Args:
        stop_epoch (int, optional): First epoch without distillation.
        stop_iter (int, optional): First iteration without distillation.

    Examples:
        >>> custom_hooks = [dict(type='mmkd_channel.DistillStopHook',
        ...                      stop_epoch=20)]
    """

    priority = 'NORMAL'

    def __init__(self,
                 stop_epoch: Optional[int] = None,
                 stop_iter: Optional[int] = None) -> None:
        if (stop_epoch is None) == (stop_iter is None):
            raise ValueError('DistillStopHook: give exactly one of '
                             f'stop_epoch and stop_iter, got stop_epoch='
                             f'{stop_epoch!r}, stop_iter={stop_iter!r}')
        for name, value in (('stop_epoch', stop_epoch), ('stop_iter',
                                                         stop_iter)):
            if value is not None and (not isinstance(value, int)
                                      or isinstance(value, bool) or value < 0):
                raise ValueError(f'DistillStopHook: {name} must be an int '
                                 f'>= 0, got {value!r}')
        self.stop_epoch = stop_epoch
        self.stop_iter = stop_iter

    def _update(self, runner) -> None:
        if self.stop_epoch is not None:
            stopped = runner.epoch >= self.stop_epoch
        else:
            stopped = runner.iter >= self.stop_iter
        distiller = get_distiller(runner, 'DistillStopHook')
        if distiller.distill_enabled and stopped:
            where = (f'epoch {runner.epoch + 1}' if self.stop_epoch is not None
                     else f'iteration {runner.iter + 1}')
            runner.logger.info(f'DistillStopHook: distillation stops at '
                               f'{where}; the student trains alone.')
        distiller.distill_enabled = not stopped

    def before_train_epoch(self, runner) -> None:
        """Apply ``stop_epoch``."""
        if self.stop_epoch is not None:
            self._update(runner)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        """Apply ``stop_iter``."""
        if self.stop_iter is not None:
            self._update(runner)
