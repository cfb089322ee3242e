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

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmkd_toy import REPO, MMKDToyNet, subprocess_env, toy_config

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


def host_randomness(host: str):
    """The ``randomness`` of a host's shipped default runtime, or None
    when the runtime leaves it to MMEngine (``dict(seed=None)``)."""
    from mmkd_channel.utils import resolve_config_path
    cfg = Config.fromfile(
        resolve_config_path(f'{host}::_base_/default_runtime.py'))
    return cfg.get('randomness')


def seedless_config(work_dir, host: str, by_epoch: bool, hooks=()):
    """The toy task with a host runtime's randomness left as it is.

    The teacher comes from a checkpoint, as in real use: a randomly
    initialised teacher would differ between processes that draw their
    own seeds (it is never in the student's checkpoints).
    """
    teacher = osp.join(osp.dirname(str(work_dir)), 'teacher.pth')
    if not osp.isfile(teacher):
        torch.manual_seed(1)
        torch.save({'state_dict': MMKDToyNet(width=16, bn=True).state_dict()},
                   teacher)
    cfg = toy_config(
        str(work_dir),
        max_epochs=EPOCHS,
        bn=True,
        augment=True,
        custom_hooks=list(hooks),
        teacher_ckpt=teacher)
    randomness = host_randomness(host)
    if randomness is None:
        cfg.pop('randomness')
    else:
        cfg.randomness = randomness
    assert cfg.get('randomness', {}).get('seed') is None
    if not by_epoch:
        cfg.train_cfg = dict(
            by_epoch=False,
            max_iters=EPOCHS * ITERS_PER_EPOCH,
            val_interval=ITERS_PER_EPOCH)
        cfg.train_dataloader.sampler = dict(type='InfiniteSampler')
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=ITERS_PER_EPOCH, by_epoch=False)
        cfg.param_scheduler = dict(
            type='MultiStepLR', milestones=[4], gamma=0.5, by_epoch=False)
        cfg.log_processor = dict(window_size=1, by_epoch=False)
    return cfg


@pytest.mark.parametrize(
    'host,by_epoch', [('mmpretrain', True), ('mmdet', False)],
    ids=['mmpretrain-epochs', 'mmdet-iterations'])
def test_resume_is_exact_with_the_hosts_seed_none(tmp_path, host, by_epoch):
    """The sampler's seed and the random streams come from the killed
    run's checkpoint, not from the seed the resumed process draws."""
    ref_dir, run_dir = tmp_path / 'ref', tmp_path / 'run'
    kill = dict(type='MMKDToyKillHook', after_epoch=1) if by_epoch else \
        dict(type='MMKDToyKillHook', after_iter=ITERS_PER_EPOCH)
    paths = {}
    for name, work_dir, hooks in (('ref', ref_dir, []),
                                  ('kill', run_dir, [kill]), ('resume',
                                                              run_dir, [])):
        paths[name] = str(tmp_path / f'{name}.py')
        seedless_config(work_dir, host, by_epoch, hooks).dump(paths[name])

    ref, killed = train(paths['ref']), train(paths['kill'])
    rc, log = finish(killed)
    assert rc == -signal.SIGKILL, log[-3000:]
    rc, log = finish(ref)
    assert rc == 0, log[-3000:]
    first = 'epoch_1.pth' if by_epoch else f'iter_{ITERS_PER_EPOCH}.pth'
    last = f'epoch_{EPOCHS}.pth' if by_epoch else \
        f'iter_{EPOCHS * ITERS_PER_EPOCH}.pth'
    killed_seed = safe_torch_load(str(run_dir / first))['meta']['seed']
    ref_seed = safe_torch_load(str(ref_dir / last))['meta']['seed']
    assert killed_seed != ref_seed  # two independently drawn seeds

    rc, log = finish(train(paths['resume'], '--resume'))
    assert rc == 0, log[-3000:]
    assert 'seed of the resumed run' in log  # the sampler was re-seeded
    resumed = safe_torch_load(str(run_dir / last))
    assert resumed['meta']['seed'] == killed_seed

    # the reference: the same seed, uninterrupted
    again_dir = tmp_path / 'again'
    cfg = seedless_config(again_dir, host, by_epoch)
    cfg.randomness = dict(seed=killed_seed)
    cfg.dump(str(tmp_path / 'again.py'))
    rc, log = finish(train(str(tmp_path / 'again.py')))
    assert rc == 0, log[-3000:]
    expected = safe_torch_load(str(again_dir / last))
    sd_ref, sd_res = expected['state_dict'], resumed['state_dict']
    assert sd_ref.keys() == sd_res.keys()
    for k in sd_ref:
        assert torch.equal(sd_ref[k], sd_res[k]), k
    # a different seed gives other weights: the comparison can fail
    other = safe_torch_load(str(ref_dir / last))['state_dict']
    assert any(not torch.equal(other[k], sd_ref[k]) for k in sd_ref)


def train_one_epoch_in_process(work_dir) -> None:
    cfg = toy_config(str(work_dir), max_epochs=2, val=False)
    Runner.from_cfg(cfg).train()


@pytest.mark.parametrize('record', ['empty', 'dangling', 'truncated'])
def test_auto_resume_falls_back_to_newest_loadable(tmp_path, record):
    work = tmp_path / 'work'
    train_one_epoch_in_process(work)
    last = work / 'last_checkpoint'
    if record == 'empty':
        last.write_text('')
    elif record == 'dangling':
        last.write_text(str(work / 'epoch_9.pth'))
    else:  # names a file cut in half
        data = (work / 'epoch_2.pth').read_bytes()
        (work / 'epoch_3.pth').write_bytes(data[:len(data) // 2])
        last.write_text(str(work / 'epoch_3.pth'))
    cfg = toy_config(str(work), max_epochs=3, val=False)
    cfg.resume = True
    runner = Runner.from_cfg(cfg)
    logs = []
    runner.logger.addFilter(lambda r: logs.append(r.getMessage()) or True)
    runner.train()
    assert runner.epoch == 3  # resumed after epoch 2, trained epoch 3
    assert safe_torch_load(str(work / 'epoch_3.pth'))['meta']['epoch'] == 3
    msg = [m for m in logs if 'newest loadable checkpoint' in m]
    assert msg and str(work / 'epoch_2.pth') in msg[0]


def test_auto_resume_without_any_checkpoint_says_so(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text('')
    cfg = toy_config(str(work), max_epochs=1, val=False)
    cfg.resume = True
    runner = Runner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError) as e:
        runner.train()
    msg = str(e.value)
    assert 'last_checkpoint' in msg and 'is empty' in msg
    assert '--resume PATH' in msg
    assert not (work / 'epoch_1.pth').exists()  # nothing was trained
