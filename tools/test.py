"""Evaluate a checkpoint with MMEngine's Runner (the student alone).

``--teacher`` evaluates the distiller's teacher instead (the weights of its
own ``teacher_ckpt``; the checkpoint given is loaded for the student, which
does not run).
Runs on GPUs and on CPU-only machines, single or multi-process
(:func:`mmkd_channel.utils.setup_launcher`).
"""
import argparse
import contextlib
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmkd_channel  # noqa: F401  (registers modules, safe loaders, scope)
from mmkd_channel.utils import setup_launcher


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a (distilled) model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--teacher',
        action='store_true',
        help='evaluate the teacher of a FeatureDistiller config')
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
    if osp.isfile(cfg.work_dir):
        raise SystemExit(
            f'work_dir {cfg.work_dir!r} is an existing file, not a '
            'directory. Give another --work-dir, or move the file away.')
    cfg.load_from = args.checkpoint
    setup_launcher(cfg, args.launcher)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    context = contextlib.nullcontext()
    if args.teacher:
        # load the checkpoint into the student slot before swapping
        runner.load_or_resume()
        from mmkd_channel.engine.hooks.teacher_eval_hook import \
            teacher_as_student
        context = teacher_as_student(
            getattr(runner.model, 'module', runner.model))
    with context:
        runner.test()


if __name__ == '__main__':
    main()
