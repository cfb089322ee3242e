"""Evaluate the teacher once, so its metrics sit next to the student's."""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

import torch
from mmengine.hooks import Hook
from torch import nn

from mmkd_channel.registry import HOOKS
from .utils import get_distiller


def teachers_of(distiller: nn.Module) -> Dict[str, nn.Module]:
    """``name -> teacher`` of a distiller (one teacher: ``'teacher'``)."""
    teachers = getattr(distiller, 'teachers', None)
    return dict(teachers) if teachers else {'teacher': distiller.teacher}


def metric_prefix(name: str) -> str:
    """``'teacher'`` for the one-teacher form, else ``'teacher_<name>'``."""
    return 'teacher' if name == 'teacher' else f'teacher_{name}'


@contextmanager
def teacher_as_student(distiller: nn.Module,
                       name: Optional[str] = None) -> Iterator[nn.Module]:
    """Let ``distiller`` predict with a teacher for the ``with`` block.

    ``predict`` / ``val_step`` / ``test_step`` of a FeatureDistiller run its
    ``student``; this swaps the teacher into that slot and back. Inputs go
    through the distiller's (the student's) data preprocessor and, for a
    teacher that normalises differently, its remap to the teacher's own
    normalisation: exactly what the teacher sees during distillation.

    Args:
        distiller (nn.Module): A FeatureDistiller (unwrapped).
        name (str, optional): Which teacher, for several (see
            ``FeatureDistiller(teachers=...)``); default: the first.

    Yields:
        nn.Module: The teacher.
    """
    teachers = teachers_of(distiller)
    name = name if name is not None else next(iter(teachers))
    teacher = teachers[name]
    remaps = getattr(distiller, 'teacher_inputs', None) or {}
    student = distiller._modules['student']
    distiller._modules['student'] = (
        _OwnNormalisation(teacher, remaps[name])
        if name in remaps else teacher)
    try:
        yield teacher
    finally:
        distiller._modules['student'] = student
        teacher.eval()


class _OwnNormalisation(nn.Module):
    """A teacher fed its own normalisation of the student's batch, as in
    distillation (``FeatureDistiller.teacher_inputs``)."""

    def __init__(self, teacher: nn.Module, remap: nn.Module) -> None:
        super().__init__()
        self.teacher, self.remap = teacher, remap

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        return self.teacher(self.remap(inputs), data_samples, mode=mode)


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Run the validation set once with the teacher and log its metrics.

    Before the first training iteration the val dataloader and evaluator of
    the run are used with the teacher in place of the student; each metric
    is logged as ``teacher/<metric>`` (log file, message hub and the
    visualizer backends, e.g. ``vis_data/scalars.json``) next to the
    student's ``<metric>``. With several teachers (``teachers=dict(det=...,
    cls=...)``) each is evaluated in turn and logged under its own name,
    ``teacher_det/<metric>``, ``teacher_cls/<metric>``. The validation
    hooks (best checkpoint, plateau schedulers) never see these numbers. A
    resumed run skips it unless ``on_resume=True``.

    Args:
        on_resume (bool): Also evaluate when the run resumes (iteration
            > 0). Defaults to False.
        teachers (Sequence[str], optional): Names of the teachers to
            evaluate; default all. Leave out a teacher whose predictions
            the student's evaluator cannot score (a detector teacher of a
            classifier student).

    Examples:
        >>> custom_hooks = [dict(type='mmkd_channel.TeacherEvalHook')]
    """

    priority = 'LOW'

    def __init__(self,
                 on_resume: bool = False,
                 teachers: Optional[Sequence[str]] = None) -> None:
        self.on_resume = on_resume
        self.teachers = None if teachers is None else list(teachers)
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
        names = list(teachers_of(distiller))
        unknown = sorted(set(self.teachers or []) - set(names))
        if unknown:
            raise KeyError(f'TeacherEvalHook: teachers={self.teachers} names '
                           f'{unknown}, but the distiller has the teachers '
                           f'{names}.')
        self.metrics = {}
        for name in (self.teachers if self.teachers is not None else names):
            runner.logger.info(f'TeacherEvalHook: evaluating {name!r} on '
                               'the validation set.')
            metrics = self._evaluate(runner, distiller, name)
            self.metrics.update({
                f'{metric_prefix(name)}/{k}': v
                for k, v in metrics.items()
            })
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

    @staticmethod
    def _evaluate(runner, distiller: nn.Module, name: str) -> dict:
        """Metrics of teacher ``name`` on the run's val loop."""
        loop = runner.val_loop
        was_training = runner.model.training
        runner.model.eval()
        try:
            with teacher_as_student(distiller, name), torch.no_grad():
                for data_batch in loop.dataloader:
                    outputs = runner.model.val_step(data_batch)
                    loop.evaluator.process(
                        data_samples=outputs, data_batch=data_batch)
                return loop.evaluator.evaluate(len(loop.dataloader.dataset))
        finally:
            runner.model.train(was_training)
