"""Evaluate a checkpoint with MMEngine's Runner (the student alone).

``--teacher`` evaluates the distiller's teacher instead (the weights of its
own ``teacher_ckpt``; the checkpoint given is loaded for the student, which
does not run).
Runs on GPUs and on CPU-only machines, single or multi-process
(:func:`mmkd_channel.utils.setup_launcher`).

``--out``, ``--show``, ``--show-dir``, ``--wait-time`` and ``--tta`` mean
what they mean in mmdet's ``tools/test.py``, for mmdet, mmseg and mmpretrain
configs alike (the host is the config's ``default_scope``):

* ``--out X.pkl`` dumps the predictions to a pickle file (mmdet's
  ``DumpDetResults``, MMEngine's ``DumpResults`` for the others). mmseg's
  own ``--out`` is a directory of PNG maps instead; for that, give
  ``--cfg-options test_evaluator.output_dir=DIR
  test_evaluator.keep_results=True``.
* ``--show`` / ``--show-dir DIR`` / ``--wait-time S`` switch on the host's
  visualization hook (drawn predictions shown, or saved under the run's
  directory).
* ``--tta`` wraps the model in the config's ``tta_model`` and tests with
  its ``tta_pipeline``; mmdet and mmpretrain configs without them get the
  host's default (flip) test-time augmentation, as the hosts' tools do;
  mmseg needs them in the config (its dataset bases define
  ``tta_pipeline``; the model default is ``SegTTAModel``).
"""
import argparse
import contextlib
import copy
import os
import os.path as osp
import warnings

from mmengine.config import Config, ConfigDict, DictAction

import mmkd_channel  # noqa: F401  (registers modules, safe loaders, scope)
from mmkd_channel.utils import setup_launcher
from mmkd_channel.utils.runner_build import build_runner

HOSTS = ('mmdet', 'mmseg', 'mmpretrain')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a (distilled) model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (relative to '
        'the run directory work_dir/timestamp)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
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


def host_of(cfg: Config) -> str:
    """The host toolbox of a config: its ``default_scope``."""
    scope = str(cfg.get('default_scope') or '')
    if scope not in HOSTS:
        raise ValueError(
            f'default_scope={scope!r}: --out / --show / --show-dir / --tta '
            f'follow the host toolbox, one of {HOSTS}; set default_scope.')
    return scope


def trigger_visualization_hook(cfg: Config, args: argparse.Namespace) -> None:
    """Turn on the host's visualization hook as its tools/test.py does."""
    hook = (cfg.get('default_hooks') or {}).get('visualization')
    if hook is None:
        raise ValueError(
            '--show / --show-dir need a visualization hook: add '
            "default_hooks.visualization=dict(type='VisualizationHook') "
            '(SegVisualizationHook for mmseg) to the config.')
    host = host_of(cfg)
    if host == 'mmpretrain':
        hook.update(enable=True, show=args.show, wait_time=args.wait_time)
        if args.show_dir:
            hook['out_dir'] = args.show_dir
        return
    hook['draw'] = True
    if args.show:
        hook.update(show=True, wait_time=args.wait_time)
    if args.show_dir:
        if host == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:  # mmseg saves through the visualizer
            cfg.visualizer['save_dir'] = args.show_dir


def flip_tta_pipeline(cfg: Config, host: str) -> list:
    """The host's default test-time augmentation: with and without flip."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    pipeline = copy.deepcopy(dataset.pipeline)
    pack = pipeline[-1]
    if host == 'mmdet':
        pack = dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor', 'flip', 'flip_direction'))
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='RandomFlip', prob=1.),
            dict(type='RandomFlip', prob=0.)
        ], [pack]])
    return pipeline


def apply_tta(cfg: Config) -> None:
    """Wrap the model for test-time augmentation, as the hosts' tools do."""
    host = host_of(cfg)
    defaults = dict(
        mmdet=dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)),
        mmseg=dict(type='SegTTAModel'),
        mmpretrain=dict(type='AverageClsScoreTTA'))
    if 'tta_model' not in cfg:
        warnings.warn(f'no tta_model in the config; using {defaults[host]}')
        cfg.tta_model = defaults[host]
    if 'tta_pipeline' not in cfg:
        if host == 'mmseg':
            raise ValueError(
                '--tta: the config has no tta_pipeline (mmseg defines it in '
                "its dataset bases, e.g. 'mmseg::_base_/datasets/"
                "cityscapes.py'); add one.")
        warnings.warn('no tta_pipeline in the config; testing with and '
                      'without horizontal flip')
        cfg.tta_pipeline = flip_tta_pipeline(cfg, host)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def dump_metric(cfg: Config, out: str):
    """The metric that writes the predictions to ``out`` (a pickle)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {out!r}: the dump file must be a .pkl '
                         'or .pickle file')
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out)
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=out)


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
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.tta:
        apply_tta(cfg)
    dump = dump_metric(cfg, args.out) if args.out else None
    setup_launcher(cfg, args.launcher)
    # the config dump goes to the log file, not the terminal
    runner = build_runner(cfg)
    if dump is not None:
        runner.test_evaluator.metrics.append(dump)
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
