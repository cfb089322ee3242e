"""A finite loss with NaN gradients never reaches the weights or a
checkpoint: stop before the update, or skip it and stop after K skips in a
row; a checkpoint with non-finite weights is never written."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from mmkd_toy import toy_config

from mmkd_channel.utils import safe_torch_load

ITERS_PER_EPOCH = 4  # 8 images, batch 2


def grad_runner(work_dir, hooks=(), **loss_kwargs) -> Runner:
    cfg = toy_config(
        str(work_dir),
        max_epochs=2,
        val=False,
        custom_hooks=list(hooks),
        loss=dict(type='MMKDToyNaNGradLoss', **loss_kwargs))
    cfg.experiment_name = f'nangrad_{osp.basename(str(work_dir))}'
    return Runner.from_cfg(cfg)


def checkpoints(work_dir) -> dict:
    return {
        osp.basename(p): safe_torch_load(p)
        for p in sorted(glob.glob(osp.join(str(work_dir), '*.pth')))
    }


def all_finite(state_dict: dict) -> bool:
    return all(
        bool(torch.isfinite(v).all()) for v in state_dict.values()
        if v.is_floating_point())


def test_negative_control_weights_go_nan_without_a_guard(tmp_path):
    """Without DistillNaNHook the NaN gradient of the last iteration of
    epoch 1 updates the weights; saving them is refused."""
    runner = grad_runner(tmp_path, nan_from=ITERS_PER_EPOCH, nan_until=4)
    with pytest.raises(FloatingPointError) as e:
        runner.train()
    msg = str(e.value)
    assert 'refusing to save checkpoint' in msg and 'epoch_1.pth' in msg
    assert not all_finite(runner.model.state_dict())  # the guard mattered
    assert checkpoints(tmp_path) == {}  # nothing non-finite on disk


def test_raise_stops_before_the_update(tmp_path):
    """NaN gradient at the last iteration of epoch 2."""
    runner = grad_runner(
        tmp_path,
        hooks=[dict(type='mmkd_channel.DistillNaNHook')],
        nan_from=2 * ITERS_PER_EPOCH)
    with pytest.raises(FloatingPointError) as e:
        runner.train()
    msg = str(e.value)
    assert f'iteration {2 * ITERS_PER_EPOCH} has non-finite' in msg
    assert 'the loss terms were finite' in msg
    assert 'student.' in msg  # names parameters
    assert 'epoch_1.pth' in msg  # the latest checkpoint, which is finite
    assert runner.iter == 2 * ITERS_PER_EPOCH - 1  # stopped in it
    assert all_finite(runner.model.state_dict())
    ckpts = checkpoints(tmp_path)
    assert list(ckpts) == ['epoch_1.pth']
    assert all(all_finite(c['state_dict']) for c in ckpts.values())


def test_skip_skips_and_the_run_finishes(tmp_path):
    """NaN gradient at the last iteration of epoch 1: skipped, then
    epoch 1 and 2 are saved, both finite."""
    runner = grad_runner(
        tmp_path,
        hooks=[dict(type='mmkd_channel.DistillNaNHook', skip=True)],
        nan_from=ITERS_PER_EPOCH,
        nan_until=ITERS_PER_EPOCH)
    before = {}

    def snapshot(*args, **kwargs):
        if runner.iter == ITERS_PER_EPOCH - 1:
            before.update({
                k: v.clone()
                for k, v in runner.model.state_dict().items()
            })

    from mmengine.hooks import Hook
    hook = Hook()
    hook.before_train_iter = snapshot
    runner.register_hook(hook)
    runner.train()
    assert runner.iter == 2 * ITERS_PER_EPOCH
    assert runner.message_hub.get_scalar('train/skipped_steps').current() == 1
    ckpts = checkpoints(tmp_path)
    assert sorted(ckpts) == ['epoch_1.pth', 'epoch_2.pth']
    assert all(all_finite(c['state_dict']) for c in ckpts.values())
    # the skipped step did not change the weights
    for k, v in before.items():
        assert torch.equal(ckpts['epoch_1.pth']['state_dict'][k], v), k


def test_skip_stops_after_k_in_a_row(tmp_path):
    runner = grad_runner(
        tmp_path,
        hooks=[
            dict(
                type='mmkd_channel.DistillNaNHook',
                skip=True,
                max_consecutive_skips=2)
        ],
        nan_from=ITERS_PER_EPOCH)  # from the last iteration of epoch 1 on
    with pytest.raises(FloatingPointError) as e:
        runner.train()
    assert '2 steps in a row were skipped' in str(e.value)
    assert runner.iter == ITERS_PER_EPOCH  # iteration 5 was the 2nd skip
    ckpts = checkpoints(tmp_path)
    assert list(ckpts) == ['epoch_1.pth']
    assert all(all_finite(c['state_dict']) for c in ckpts.values())


def test_bad_max_consecutive_skips():
    from mmkd_channel.engine import DistillNaNHook
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        DistillNaNHook(skip=True, max_consecutive_skips=0)
