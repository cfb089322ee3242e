"""Train a (distilled) model with MMEngine's Runner, as mmdet's train.py.

The same command line runs on GPUs and on CPU-only machines: with a
launcher and no CUDA, the process group is initialised with gloo and the
model is wrapped with ``CPUDistributedDataParallel``
(:func:`mmkd_channel.utils.setup_launcher`).
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction

import mmkd_channel  # noqa: F401  (registers modules, safe loaders, scope)
from mmkd_channel.utils import remove_stale_tmp_files, setup_launcher
from mmkd_channel.utils.runner_build import build_runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a student with feature distillation')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (GPU only; the '
        'teacher then runs under fp16 autocast too)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size over '
        "the config's auto_scale_lr.base_batch_size (mmdet and mmpretrain "
        'configs define it; mmseg configs do not)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, without a value, from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def add_default_hooks(cfg: Config) -> None:
    """Append ``EpochSeedHook`` (exact resume) and ``DistillNaNHook`` (no
    non-finite step reaches the weights) unless the config has them."""
    hooks = list(cfg.get('custom_hooks') or [])
    for name in ('EpochSeedHook', 'DistillNaNHook'):
        if not any(name in str(h.get('type', '')) for h in hooks):
            hooks.append(dict(type=f'mmkd_channel.{name}'))
    cfg.custom_hooks = hooks


def check_work_dir(work_dir: str) -> None:
    """Fail early, with the fix, if ``work_dir`` is an existing file."""
    if osp.isfile(work_dir):
        raise SystemExit(
            f'work_dir {work_dir!r} is an existing file, not a directory. '
            'Give another --work-dir (or work_dir in the config), or move '
            'the file away.')


def enable_auto_scale_lr(cfg: Config) -> None:
    """Switch on MMEngine's LR scaling, as mmdet's ``--auto-scale-lr``."""
    auto = cfg.get('auto_scale_lr')
    if not isinstance(auto, dict) or 'base_batch_size' not in auto:
        raise SystemExit(
            'tools/train.py: --auto-scale-lr needs auto_scale_lr.'
            f'base_batch_size in the config (found auto_scale_lr={auto!r}). '
            'Add the batch size the learning rate was tuned for, e.g. '
            'auto_scale_lr = dict(enable=False, base_batch_size=16) for '
            "mmdet's 8 GPUs x 2 images.")
    cfg.auto_scale_lr.enable = True


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit(
                'tools/train.py: --amp needs a GPU. MMEngine 0.10.7 refuses '
                'AmpOptimWrapper without CUDA/NPU/MLU/MUSA; train in fp32 '
                'on CPU (drop --amp).')
        if cfg.optim_wrapper.get('type') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    add_default_hooks(cfg)
    check_work_dir(cfg.work_dir)
    setup_launcher(cfg, args.launcher)
    # the config dump goes to the log file, not the terminal
    runner = build_runner(cfg)
    if runner.rank == 0:  # the only rank that saves checkpoints
        remove_stale_tmp_files(runner.work_dir)
    runner.train()


if __name__ == '__main__':
    main()
