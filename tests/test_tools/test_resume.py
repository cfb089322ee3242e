"""SIGKILL after a checkpoint, then --resume: bitwise the uninterrupted run.

Setting: the toy distillation task (student and teacher with BN, random
flips and noise drawn from NumPy's and torch's global generators in the
data pipeline, SGD with momentum and weight decay, a step LR schedule,
validation between epochs) on CPU. CPU kernels are deterministic for a
fixed thread count and ``EpochSeedHook`` (added by tools/train.py) makes
each epoch's random stream depend on (seed, epoch) only, so the resumed run
replays exactly the same computation: the weights must agree bitwise.
"""
import glob
import json
import os.path as osp
import signal
import subprocess
import sys

import torch
from mmkd_toy import REPO, subprocess_env, toy_config

from mmkd_channel.utils import safe_torch_load

EPOCHS = 3
ITERS_PER_EPOCH = 4  # 8 images, batch 2


def train(cfg_file, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, 'tools/train.py', cfg_file, *args],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True)


def finish(proc) -> tuple:
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out + err


def train_scalars(work_dir) -> list:
    """Training records of the newest run in ``work_dir``."""
    runs = sorted(
        glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')))
    with open(runs[-1]) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if 'loss' in r]


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):

    def dump(name, work_dir, hooks=()):
        cfg = toy_config(
            str(work_dir),
            max_epochs=EPOCHS,
            bn=True,
            augment=True,
            custom_hooks=list(hooks))
        path = str(tmp_path / f'{name}.py')
        cfg.dump(path)
        return path

    ref_dir, run_dir = tmp_path / 'ref', tmp_path / 'run'
    ref_cfg = dump('ref', ref_dir)
    kill_cfg = dump('kill', run_dir,
                    [dict(type='MMKDToyKillHook', after_epoch=1)])
    resume_cfg = dump('resume', run_dir)

    # the uninterrupted reference and the run killed after epoch 1
    ref, killed = train(ref_cfg), train(kill_cfg)
    rc, log = finish(killed)
    assert rc == -signal.SIGKILL, log[-3000:]
    assert osp.isfile(run_dir / 'epoch_1.pth')
    assert not osp.exists(run_dir / 'epoch_2.pth')
    rc, log = finish(ref)
    assert rc == 0, log[-3000:]

    rc, log = finish(train(resume_cfg, '--resume'))  # latest checkpoint
    assert rc == 0, log[-3000:]
    assert 'resumed epoch: 1, iter: 4' in log
    assert 'Epoch(train) [2][1/4]' in log

    # the logs continue the iteration count
    iters = [r['iter'] for r in train_scalars(str(run_dir))]
    assert iters == list(
        range(ITERS_PER_EPOCH + 1, EPOCHS * ITERS_PER_EPOCH + 1))

    expected = safe_torch_load(str(ref_dir / f'epoch_{EPOCHS}.pth'))
    resumed = safe_torch_load(str(run_dir / f'epoch_{EPOCHS}.pth'))
    assert resumed['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    sd_ref, sd_res = expected['state_dict'], resumed['state_dict']
    assert sd_ref.keys() == sd_res.keys()
    assert any('running_mean' in k for k in sd_ref)  # BN buffers compared
    for k in sd_ref:
        assert torch.equal(sd_ref[k], sd_res[k]), k
    # momentum buffers too
    for a, b in zip(expected['optimizer']['state'].values(),
                    resumed['optimizer']['state'].values()):
        assert torch.equal(a['momentum_buffer'], b['momentum_buffer'])
    # and the same training losses after the resume point
    ref_losses = [r['loss'] for r in train_scalars(str(ref_dir))]
    res_losses = [r['loss'] for r in train_scalars(str(run_dir))]
    assert res_losses == ref_losses[ITERS_PER_EPOCH:]
