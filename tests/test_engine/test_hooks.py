"""TeacherEvalHook, DistillStopHook and EpochSeedHook on the toy task."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmkd_toy import toy_config

from mmkd_channel.engine import DistillStopHook
from mmkd_channel.engine.hooks.teacher_eval_hook import teacher_as_student
from mmkd_channel.utils import safe_torch_load


def make_runner(work_dir, **kwargs) -> Runner:
    cfg = toy_config(str(work_dir), **kwargs)
    cfg.experiment_name = f'toy_{osp.basename(str(work_dir))}'
    return Runner.from_cfg(cfg)


class CountTeacherCalls(Hook):
    """Counts teacher forward calls per training iteration."""

    def __init__(self) -> None:
        self.calls = []
        self._n = 0

    def before_run(self, runner) -> None:

        def count(*args):
            self._n += 1

        runner.model.teacher.register_forward_pre_hook(count)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._n = 0

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.calls.append(self._n)


def test_teacher_eval_hook_logs_teacher_metrics(tmp_path):
    runner = make_runner(
        tmp_path,
        max_epochs=1,
        custom_hooks=[dict(type='mmkd_channel.TeacherEvalHook')])
    runner.train()
    hub = runner.message_hub
    teacher_acc = hub.get_scalar('teacher/accuracy').current()
    student_acc = hub.get_scalar('val/accuracy').current()
    # the same number as the test loop with the teacher in place
    with teacher_as_student(runner.model):
        metrics = runner.test()
    assert metrics['accuracy'] == pytest.approx(teacher_acc)
    with torch.no_grad():  # and the student is back in its place
        assert runner.test()['accuracy'] == pytest.approx(student_acc)
    assert not runner.model.teacher.training
    # logged next to the student's metrics in the visualizer backend
    (scalars, ) = glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    assert any('teacher/accuracy' in r for r in records)
    assert any('accuracy' in r for r in records)


def test_distill_stop_hook_by_iter(tmp_path):
    counter = CountTeacherCalls()
    runner = make_runner(
        tmp_path,
        max_epochs=1,
        val=False,
        custom_hooks=[dict(type='mmkd_channel.DistillStopHook', stop_iter=2)])
    runner.register_hook(counter)
    runner.train()
    distill = runner.message_hub.get_scalar(
        'train/loss_distill_neck').data[0].tolist()
    assert len(distill) == 4
    assert all(v > 0 for v in distill[:2])
    assert distill[2:] == [0.0, 0.0]  # exact zeros once stopped
    assert counter.calls == [1, 1, 0, 0]  # the teacher no longer runs
    assert runner.model.distill_enabled is False


def test_distill_stop_hook_by_epoch_and_resume(tmp_path):
    runner = make_runner(
        tmp_path,
        max_epochs=2,
        val=False,
        custom_hooks=[dict(type='mmkd_channel.DistillStopHook', stop_epoch=1)])
    runner.train()
    distill = runner.message_hub.get_scalar(
        'train/loss_distill_neck').data[0].tolist()
    assert all(v > 0 for v in distill[:4]) and distill[4:] == [0.0] * 4
    # a run resumed after the stop epoch does not distil either
    runner = make_runner(
        tmp_path,
        max_epochs=3,
        val=False,
        custom_hooks=[dict(type='mmkd_channel.DistillStopHook', stop_epoch=1)])
    runner._resume, runner._load_from = True, None
    counter = CountTeacherCalls()
    runner.register_hook(counter)
    runner.train()
    assert counter.calls == [0] * 4


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(stop_epoch=1, stop_iter=3),
    dict(stop_epoch=-1),
    dict(stop_iter=1.5)
])
def test_distill_stop_hook_arguments(kwargs):
    with pytest.raises(ValueError, match='stop_'):
        DistillStopHook(**kwargs)


def test_hooks_refuse_a_model_that_is_not_a_distiller(tmp_path):
    cfg = toy_config(str(tmp_path), max_epochs=1, val=False)
    cfg.model = dict(type='MMKDToyNet')
    cfg.custom_hooks = [dict(type='mmkd_channel.DistillStopHook', stop_iter=1)]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(
            TypeError, match='DistillStopHook works on a '
            'FeatureDistiller'):
        runner.train()


class _Interrupt(Exception):
    pass


class InterruptAfterEpoch(Hook):
    """Abort the run right after the checkpoint of epoch 1 was written."""

    priority = 'LOWEST'

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == 1:
            raise _Interrupt


def weights_after_resume(tmp_path, hooks) -> tuple:
    """(uninterrupted 3 epochs, interrupted + resumed) final weights."""
    kwargs = dict(bn=True, augment=True, val=True, custom_hooks=hooks)
    ref = make_runner(tmp_path / 'ref', max_epochs=3, **kwargs)
    ref.train()
    interrupted = make_runner(tmp_path / 'run', max_epochs=3, **kwargs)
    interrupted.register_hook(InterruptAfterEpoch())
    with pytest.raises(_Interrupt):
        interrupted.train()
    resumed = make_runner(tmp_path / 'run', max_epochs=3, **kwargs)
    resumed._resume, resumed._load_from = True, None
    resumed.train()
    assert resumed.iter == ref.iter == 12
    return (safe_torch_load(str(tmp_path / 'ref' / 'epoch_3.pth')),
            safe_torch_load(str(tmp_path / 'run' / 'epoch_3.pth')))


def test_epoch_seed_hook_makes_resume_exact(tmp_path):
    ref, res = weights_after_resume(tmp_path,
                                    [dict(type='mmkd_channel.EpochSeedHook')])
    for k, v in ref['state_dict'].items():
        assert torch.equal(v, res['state_dict'][k]), k


def test_without_epoch_seed_hook_resume_drifts(tmp_path):
    """Negative control: MMEngine alone does not restore the random
    streams, so augmentation after the resume differs."""
    ref, res = weights_after_resume(tmp_path, [])
    assert any(not torch.equal(v, res['state_dict'][k])
               for k, v in ref['state_dict'].items())
