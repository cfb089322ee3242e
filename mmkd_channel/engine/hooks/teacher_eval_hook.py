"""Evaluate the teacher once, so its metrics sit next to the student's."""
from contextlib import contextmanager
from typing import Dict, Iterator

import torch
from mmengine.hooks import Hook
from torch import nn

from mmkd_channel.registry import HOOKS
from .utils import get_distiller


@contextmanager
def teacher_as_student(distiller: nn.Module) -> Iterator[nn.Module]:
    """Let ``distiller`` predict with its teacher for the ``with`` block.

    ``predict`` / ``val_step`` / ``test_step`` of a FeatureDistiller run its
    ``student``; this swaps the teacher into that slot and back. Inputs go
    through the distiller's (the student's) data preprocessor, exactly as
    the teacher sees them during distillation.

    Args:
        distiller (nn.Module): A FeatureDistiller (unwrapped).

    Yields:
        nn.Module: The teacher.
    """
    student = distiller._modules['student']
    distiller._modules['student'] = distiller.teacher
    try:
        yield distiller.teacher
    finally:
        distiller._modules['student'] = student
        distiller.teacher.eval()


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Run the validation set once with the teacher and log its metrics.

    Before the first training iteration the val dataloader and evaluator of
    the run are used with the teacher in place of the student; each metric
    is logged as ``teacher/<metric>`` (log file, message hub and the
    visualizer backends, e.g. ``vis_data/scalars.json``) next to the
    student's ``<metric>``. The validation hooks (best checkpoint, plateau
    schedulers) never see these numbers. A resumed run skips it unless
    ``on_resume=True``.

    Args:
        on_resume (bool): Also evaluate when the run resumes (iteration
            > 0). Defaults to False.

    Examples:
        >>> custom_hooks = [dict(type='mmkd_channel.TeacherEvalHook')]
    """

    priority = 'LOW'

    def __init__(self, on_resume: bool = False) -> None:
        self.on_resume = on_resume
        self.metrics: Dict[str, float] = {}

    def before_train(self, runner) -> None:
        """Evaluate the teacher (all ranks take part, as in validation)."""
        if runner.iter > 0 and not self.on_resume:
            return
        if runner.val_loop is None:
            runner.logger.warning(
                'TeacherEvalHook: the run has no val_dataloader / '
                'val_evaluator, so the teacher is not evaluated.')
            return
        distiller = get_distiller(runner, 'TeacherEvalHook')
        loop = runner.val_loop
        runner.logger.info('TeacherEvalHook: evaluating the teacher on the '
                           'validation set.')
        was_training = runner.model.training
        runner.model.eval()
        try:
            with teacher_as_student(distiller), torch.no_grad():
                for data_batch in loop.dataloader:
                    outputs = runner.model.val_step(data_batch)
                    loop.evaluator.process(
                        data_samples=outputs, data_batch=data_batch)
                metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
        finally:
            runner.model.train(was_training)
        self.metrics = {f'teacher/{k}': v for k, v in metrics.items()}
        scalars = {}
        for key, value in self.metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float)):
                scalars[key] = value
                runner.message_hub.update_scalar(key, value)
        runner.message_hub.update_info('teacher_metrics', self.metrics)
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        runner.logger.info('Teacher: ' + '  '.join(
            f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
            for k, v in self.metrics.items()))
