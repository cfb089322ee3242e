"""Two teachers in a Runner: TeacherEvalHook scores each under its own
name, checkpoints hold neither, resume rebuilds both from their files."""
import pytest
import torch
from mmengine.runner import Runner
from mmkd_toy import toy_config

from mmkd_channel.engine.hooks.teacher_eval_hook import teacher_as_student
from mmkd_channel.utils import safe_torch_load


def two_teachers(tmp_path):
    """Toy teachers of widths 16 and 4, saved as checkpoints."""
    from mmkd_toy import MMKDToyNet
    ckpts = {}
    for seed, (name, width) in enumerate((('wide', 16), ('thin', 4))):
        torch.manual_seed(10 + seed)
        path = str(tmp_path / f'{name}.pth')
        torch.save({'state_dict': MMKDToyNet(width=width).state_dict()}, path)
        ckpts[name] = (width, path)
    teachers = {
        name: dict(config=dict(type='MMKDToyNet', width=w), ckpt=path)
        for name, (w, path) in ckpts.items()
    }
    distill = {
        f'neck_{name}':
        dict(
            teacher_model=name,
            student='neck',
            connector=dict(
                type='ChannelWiseTransform', in_channels=8, out_channels=w),
            loss=dict(type='FeatureL2Loss'))
        for name, (w, _) in ckpts.items()
    }
    return dict(teacher=None, teachers=teachers, distill=distill), ckpts


def make_runner(work_dir, model_kwargs, resume=False, **kwargs):
    cfg = toy_config(str(work_dir), max_epochs=1, **kwargs)
    cfg.resume = resume
    cfg.model.pop('teacher')
    for key, value in model_kwargs.items():
        if value is not None:
            cfg.model[key] = value  # replaced, not merged
    return Runner.from_cfg(cfg)


def test_eval_hook_scores_each_teacher_and_resume(tmp_path):
    model_kwargs, ckpts = two_teachers(tmp_path)
    runner = make_runner(
        tmp_path / 'run',
        model_kwargs,
        custom_hooks=[dict(type='mmkd_channel.TeacherEvalHook')])
    runner.train()
    hub = runner.message_hub
    for name in ('wide', 'thin'):
        logged = hub.get_scalar(f'teacher_{name}/accuracy').current()
        with teacher_as_student(runner.model, name):
            assert runner.test()['accuracy'] == pytest.approx(logged)
    assert 'teacher/accuracy' not in hub.log_scalars
    # the two teachers differ, so the two numbers are each its own
    preds = {}
    x = torch.rand(4, 3, 16, 16)
    for name, teacher in runner.model.teachers.items():
        preds[name] = teacher(x)
    assert not torch.equal(preds['wide'], preds['thin'])

    ckpt = safe_torch_load(str(tmp_path / 'run' / 'epoch_1.pth'))
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])
    assert any(
        k.startswith('distill_pairs.neck_thin') for k in ckpt['state_dict'])

    # resume: both teachers come back from their own files
    resumed = make_runner(tmp_path / 'run', model_kwargs, resume=True)
    resumed.load_or_resume()
    assert resumed.iter == runner.iter
    for name, (_, path) in ckpts.items():
        own = safe_torch_load(path)['state_dict']
        for k, v in resumed.model.teachers[name].state_dict().items():
            assert torch.equal(v, own[k]), (name, k)
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, ckpt['state_dict'][k]), k


def test_eval_hook_selected_teachers(tmp_path):
    model_kwargs, _ = two_teachers(tmp_path)
    runner = make_runner(
        tmp_path / 'run',
        model_kwargs,
        custom_hooks=[
            dict(type='mmkd_channel.TeacherEvalHook', teachers=['thin'])
        ])
    runner.train()
    assert 'teacher_thin/accuracy' in runner.message_hub.log_scalars
    assert 'teacher_wide/accuracy' not in runner.message_hub.log_scalars
