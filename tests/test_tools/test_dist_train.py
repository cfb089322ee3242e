"""tools/dist_train.sh, dist_test.sh and slurm_train.sh on CPU (gloo).

Two processes share the machine's CPU cores; the scripts are the ones a GPU
cluster uses, unchanged.
"""
import glob
import json
import os
import os.path as osp
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmkd_toy import REPO, free_port, subprocess_env, toy_config

from mmkd_channel.testing.tiny_configs import tiny_det_config
from mmkd_channel.utils import safe_torch_load

FRCNN = 'configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py'
# Loss / weight agreement of 2 processes x batch 1 with 1 process x batch 2
# (toy task without BN, mean-reduced losses of equal-sized samples, SGD):
# the two runs compute the same mathematical quantities and differ only in
# fp32 summation order (per-sample gradients averaged by the all-reduce vs
# summed inside one batched backward), ~1e-7 relative per step. Over 8
# steps this stays far below 1e-5.
RTOL, ATOL = 1e-5, 1e-6


def run(cmd, cwd, env=None, timeout=240) -> subprocess.CompletedProcess:
    env = env or subprocess_env()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
        f'{proc.stderr[-6000:]}')
    return proc


def dist_env(nproc_port=None) -> dict:
    env = subprocess_env()
    env['PORT'] = str(nproc_port or free_port())
    return env


def rank_info(work_dir, rank) -> dict:
    with open(osp.join(work_dir, f'rank{rank}.json')) as f:
        return json.load(f)


def rank_state(work_dir, rank) -> dict:
    return torch.load(
        osp.join(work_dir, f'rank{rank}_state.pth'), weights_only=True)


def assert_same_states(a: dict, b: dict, exact=True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL)


def test_dist_train_frcnn_two_cpu_processes(repo_root, coco_data, tmp_path):
    cfg = Config.fromfile(osp.join(repo_root, FRCNN))
    work_dir = tmp_path / 'work'
    tiny_det_config(
        cfg, coco_data, str(work_dir), img_scale=(64, 64),
        batch_size=1)  # 4 images: 2 iterations per process
    cfg.custom_imports = dict(
        imports=['mmkd_channel', 'mmkd_toy'], allow_failed_imports=False)
    # rank 1 dumps its weights, rank 0 writes the checkpoint (no optimizer
    # state: 160 MB less to write)
    cfg.custom_hooks = [dict(type='MMKDToyRankDumpHook', state_ranks=[1])]
    cfg.default_hooks.checkpoint.save_optimizer = False
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg_file = str(tmp_path / 'frcnn_tiny.py')
    cfg.dump(cfg_file)

    run(['bash', 'tools/dist_train.sh', cfg_file, '2'], repo_root, dist_env())

    infos = [rank_info(work_dir, r) for r in (0, 1)]
    for info in infos:
        assert info['wrapper'] == 'CPUDistributedDataParallel'
        assert info['is_ddp'] and info['device_ids'] is None
        assert info['backend'] == 'gloo' and info['world_size'] == 2
        assert len(info['losses']) == 2
        assert all(np.isfinite(info['losses']))
        # the teacher is not wrapped for gradient sync
        assert not info['ddp_has_teacher_param']
        assert not any('teacher' in n for n in info['ddp_params'])
        assert any(n.startswith('module.student.') for n in info['ddp_params'])
        assert info['num_teacher_params'] > 0
        assert not info['teacher_requires_grad']
    # each rank saw its own image, so the losses differ ...
    assert infos[0]['losses'] != infos[1]['losses']
    # ... but the averaged gradients keep the weights identical: the
    # checkpoint holds rank 0's weights
    ckpt = safe_torch_load(str(work_dir / 'epoch_1.pth'))
    assert_same_states(ckpt['state_dict'], rank_state(work_dir, 1))
    assert not any(k.startswith('teacher.') for k in ckpt['state_dict'])


@pytest.fixture(scope='module')
def single_process_run(tmp_path_factory):
    """1 process x batch 2: the reference of the 2-process runs."""
    tmp = tmp_path_factory.mktemp('single')
    work_dir = str(tmp / 'work')
    cfg = toy_config(
        work_dir,
        batch_size=2,
        custom_hooks=[
            dict(type='MMKDToyRankDumpHook'),
            dict(type='mmkd_channel.TeacherEvalHook')
        ])
    cfg.dump(str(tmp / 'toy.py'))
    run([subprocess_env()['PYTHON'], 'tools/train.py',
         str(tmp / 'toy.py')], REPO)
    return tmp, work_dir


def test_dist_loss_matches_single_process(single_process_run, tmp_path):
    _, single_dir = single_process_run
    work_dir = str(tmp_path / 'work')
    cfg = toy_config(
        work_dir,
        batch_size=1,  # 2 x 1 = the same global 2
        custom_hooks=[dict(type='MMKDToyRankDumpHook')])
    cfg.dump(str(tmp_path / 'toy.py'))
    run(['bash', 'tools/dist_train.sh',
         str(tmp_path / 'toy.py'), '2'], REPO, dist_env())

    single = rank_info(single_dir, 0)
    r0, r1 = rank_info(work_dir, 0), rank_info(work_dir, 1)
    assert single['world_size'] == 1 and r0['world_size'] == 2
    assert len(single['losses']) == len(r0['losses']) == 8  # 2 epochs x 4
    # the DefaultSampler gives rank r the r-th sample of each global batch
    ddp_loss = (np.array(r0['losses']) + np.array(r1['losses'])) / 2
    np.testing.assert_allclose(ddp_loss, single['losses'], RTOL, ATOL)
    s0, s1 = rank_state(work_dir, 0), rank_state(work_dir, 1)
    assert_same_states(s0, s1)
    assert_same_states(s0, rank_state(single_dir, 0), exact=False)


def last_accuracy(text: str, prefix: str = '') -> float:
    found = re.findall(prefix + r'accuracy: ([\d.]+)', text)
    assert found, text[-2000:]
    return float(found[-1])


def training_log(work_dir: str) -> str:
    log = ''
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.log'))):
        with open(path) as f:
            log += f.read()
    return log


def test_dist_test_matches_single_process(single_process_run, tmp_path):
    tmp, single_dir = single_process_run
    ckpt = osp.join(single_dir, 'epoch_2.pth')
    proc = run([
        'bash',
        osp.join(REPO, 'tools/dist_test.sh'),
        str(tmp / 'toy.py'), ckpt, '2', '--work-dir',
        str(tmp_path)
    ], str(tmp_path), dist_env())
    # the last validation of the training run used the same weights
    assert last_accuracy(proc.stdout + proc.stderr) == last_accuracy(
        training_log(single_dir))


def test_test_py_teacher_matches_teacher_eval_hook(single_process_run,
                                                   tmp_path):
    tmp, single_dir = single_process_run
    ckpt = osp.join(single_dir, 'epoch_2.pth')
    proc = run([
        sys.executable,
        osp.join(REPO, 'tools/test.py'),
        str(tmp / 'toy.py'), ckpt, '--teacher', '--work-dir',
        str(tmp_path)
    ], str(tmp_path))
    log = training_log(single_dir)
    assert 'teacher/accuracy' in log  # TeacherEvalHook before training
    assert last_accuracy(proc.stdout + proc.stderr) == last_accuracy(
        log, 'teacher/')


FAKE_SRUN = r'''#!/usr/bin/env bash
# Minimal srun: start --ntasks copies of the command with SLURM_* set.
NTASKS=1
while [[ "$1" == -* ]]; do
    case "$1" in
        -p) shift 2 ;;
        --ntasks=*) NTASKS="${1#--ntasks=}"; shift ;;
        *) shift ;;
    esac
done
echo "fake srun: $NTASKS tasks: $*" >&2
pids=()
for ((i = 0; i < NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$NTASKS SLURM_LOCALID=$i \
    SLURM_NODELIST=localhost "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
'''


def test_slurm_train_sh_cpu_sync_bn_skip_and_stop(tmp_path):
    """slurm_train.sh on CPU with SyncBN in the model; under DDP a NaN on
    one rank only is skipped by both ranks, and stopping distillation
    leaves no unused parameter."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = subprocess_env()
    env['PATH'] = f'{bin_dir}{os.pathsep}{env["PATH"]}'
    env.pop('MASTER_ADDR', None)  # taken from SLURM_NODELIST
    env.update(
        GPUS='2',
        GPUS_PER_NODE='0',
        CPUS_PER_TASK='1',
        MASTER_PORT=str(free_port()))
    work_dir = str(tmp_path / 'work')
    cfg = toy_config(
        work_dir,
        max_epochs=2,  # 2 x 2 iterations per process
        bn='sync',
        val=False,
        loss=dict(type='MMKDToyNaNLoss', nan_from=1, nan_until=1, rank=1),
        custom_hooks=[
            dict(type='MMKDToyRankDumpHook'),
            dict(type='mmkd_channel.DistillNaNHook', skip=True),
            dict(type='mmkd_channel.DistillStopHook', stop_iter=2)
        ])
    cfg.dump(str(tmp_path / 'toy.py'))
    proc = run([
        'bash', 'tools/slurm_train.sh', 'cpu', 'toy',
        str(tmp_path / 'toy.py'), work_dir
    ], REPO, env)
    assert 'fake srun: 2 tasks' in proc.stderr
    assert 'converting every SyncBN layer' in proc.stdout + proc.stderr
    for rank in (0, 1):
        info = rank_info(work_dir, rank)
        assert info['world_size'] == 2 and info['backend'] == 'gloo'
        assert info['wrapper'] == 'CPUDistributedDataParallel'
        assert info['sync_bn'] == []  # reverted to BN on CPU
        # iteration 1 skipped on both ranks (NaN on rank 1 only), 2
        # distils, 3-4 train the student alone
        assert info['skipped_steps'] == 1
        d = info['distill_losses']
        assert d[0] == 0.0 and d[1] > 0 and d[2:] == [0.0, 0.0]
    # parameters agree; BN running statistics are per process (as with
    # BN on GPUs and broadcast_buffers=False)
    s0, s1 = rank_state(work_dir, 0), rank_state(work_dir, 1)
    keep = [k for k in s0 if 'running_' not in k and 'num_batches' not in k]
    assert any('backbone.1.weight' in k for k in keep)
    assert_same_states({k: s0[k] for k in keep}, {k: s1[k] for k in keep})
