"""A distill loss that turns NaN / inf: stop (default) or skip the step."""
import copy
import math
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmkd_toy import toy_config

from mmkd_channel.utils import safe_torch_load


def nan_runner(work_dir, hooks=(), **loss_kwargs) -> Runner:
    cfg = toy_config(
        str(work_dir),
        max_epochs=2,
        val=False,
        custom_hooks=list(hooks),
        loss=dict(type='MMKDToyNaNLoss', **loss_kwargs))
    cfg.experiment_name = f'nan_{osp.basename(str(work_dir))}'
    return Runner.from_cfg(cfg)


class Snapshots(Hook):
    """Weights and momentum after every training iteration."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.weights, self.momentum = [], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.weights.append(copy.deepcopy(runner.model.state_dict()))
        state = runner.optim_wrapper.optimizer.state
        self.momentum.append([
            state[p]['momentum_buffer'].clone()
            for p in runner.model.parameters() if p in state
        ])


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nonfinite_distill_loss_stops_run(tmp_path, value):
    # 4 iterations per epoch: the 6th training call (epoch 2) goes bad
    runner = nan_runner(tmp_path, nan_from=6, value=value)
    good = Snapshots()
    runner.register_hook(good)
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    msg = str(info.value)
    assert "['loss_distill_neck']" in msg and 'not finite' in msg
    assert 'DistillNaNHook' in msg  # says how to skip instead
    assert runner.iter == 5  # stopped in iteration 6, before its update
    # the weights never saw the bad step ...
    model_sd = runner.model.state_dict()
    for k, v in good.weights[-1].items():
        assert torch.equal(model_sd[k], v), k
    # ... and the last good checkpoint is intact
    assert not osp.exists(tmp_path / 'epoch_2.pth')
    ckpt = safe_torch_load(str(tmp_path / 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1
    for k, v in good.weights[3].items():  # state after iteration 4
        assert torch.equal(ckpt['state_dict'][k], v), k
    assert all(
        torch.isfinite(v).all() for v in ckpt['state_dict'].values()
        if v.is_floating_point())


def test_skip_nonfinite_steps(tmp_path):
    runner = nan_runner(
        tmp_path,
        hooks=[dict(type='mmkd_channel.DistillNaNHook', skip=True)],
        nan_from=3,
        nan_until=3)
    snaps = Snapshots()
    runner.register_hook(snaps)
    runner.train()  # the run completes
    assert runner.iter == 8
    w, m = snaps.weights, snaps.momentum
    # iteration 3 was skipped: no update, not even momentum / weight decay
    for k in w[1]:
        assert torch.equal(w[2][k], w[1][k]), k
    for a, b in zip(m[2], m[1]):
        assert torch.equal(a, b)
    # the steps before and after it did update
    assert any(not torch.equal(w[1][k], w[0][k]) for k in w[0])
    assert any(not torch.equal(w[3][k], w[2][k]) for k in w[2])
    hub = runner.message_hub
    assert hub.get_scalar('train/skipped_steps').current() == 1
    losses = hub.get_scalar('train/loss_distill_neck').data[0].tolist()
    assert losses[2] == 0.0 and all(
        math.isfinite(v) and v > 0 for i, v in enumerate(losses) if i != 2)
    assert all(
        torch.isfinite(v).all() for v in runner.model.state_dict().values()
        if v.is_floating_point())


def test_skip_false_is_the_default_stop(tmp_path):
    runner = nan_runner(
        tmp_path,
        hooks=[dict(type='mmkd_channel.DistillNaNHook', skip=False)],
        nan_from=2)
    with pytest.raises(FloatingPointError, match='loss_distill_neck'):
        runner.train()
    assert runner.iter == 1
