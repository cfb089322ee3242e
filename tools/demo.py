"""Demo: a small real CWT distillation on scikit-learn's digits, on CPU.

One seed of the efficacy benchmark's digits task
(``tools/benchmarks/mmkd_bench``, the same code and configs):
writes the 1,797 real handwritten digits in mmpretrain's ImageNet format
(300 train images, the rest for validation, 32 px), then trains with
MMEngine's Runner

  1. the teacher: mmpretrain's ResNet-18 (its own config),
  2. the plain student: this project's MobileNetV1 0.5x
     (configs/mobilenet_v1/mobilenet-v1_8xb32_in1k.py),
  3. the CWT student: the shipped
     configs/cwt/cwt_last-stage_resnet50_mobilenet-v1_8xb32-100e_in1k.py
     with the teacher of step 1 and the student of step 2, same schedule,

and ends with their top-1 accuracies, the gain and the time, then prints the
commands that export the distilled student for mmpretrain and draw what it
learnt (``visualize_channels.py``). The teacher's and the distilled
student's final checkpoints stay in the work directory for that. Nothing is
downloaded. ``--quick`` runs a seconds-long version on a tiny subset.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the benchmark harness is not part of the installed package
sys.path.insert(0, osp.join(REPO, 'tools', 'benchmarks'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='40 train images, 40 val images, one epoch')
    parser.add_argument(
        '--set',
        nargs='+',
        metavar='KEY=VALUE',
        help='override a digits setting, e.g. epochs=20')
    return parser.parse_args(argv)


def keep_distilled_checkpoint(task_cls: type) -> None:
    """Make the task's distilled students save their final checkpoint.

    The efficacy benchmark keeps only the teacher's checkpoint (students
    are measured, not reused); the demo keeps the distilled student's too,
    so that it can be exported and visualised. The checkpoint hook is part
    of the run's config, so cached runs without it are not reused.
    """
    original = task_cls.build_distill_cfg
    if getattr(original, '_keeps_checkpoint', False):
        return

    def build_distill_cfg(self, *args, **kwargs):
        cfg = original(self, *args, **kwargs)
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook',
            interval=cfg.train_cfg.max_epochs,
            max_keep_ckpts=1,
            save_last=True)
        return cfg

    build_distill_cfg._keeps_checkpoint = True
    task_cls.build_distill_cfg = build_distill_cfg


def last_checkpoint(work_dir: str) -> str:
    """The ``epoch_N.pth`` of a run with the largest ``N``."""
    ckpts = glob.glob(osp.join(work_dir, 'epoch_*.pth'))
    if not ckpts:
        raise SystemExit(f'no checkpoint in {work_dir}')
    return max(ckpts, key=lambda p: int(p.rsplit('_', 1)[1][:-4]))


def next_steps(task, seed: int, work_dir: str, teacher_name: str) -> list:
    """Where the checkpoints are and the commands that use them."""
    from_dir = task.work_dir('cwt', seed)
    student = last_checkpoint(from_dir)
    teacher = last_checkpoint(task.work_dir(teacher_name, 0))
    config = osp.join(from_dir, 'config.py')
    images = sorted(
        glob.glob(
            osp.join(task.prepare()['data_root'], 'val', '**', '*.*'),
            recursive=True))
    here = os.getcwd() + os.sep
    rel = [
        osp.relpath(p) if osp.abspath(p).startswith(here) else p
        for p in (student, teacher, config, work_dir)
    ]
    student, teacher, config, work_dir = rel
    return [
        '',
        f'teacher checkpoint:           {teacher}',
        f'distilled student checkpoint: {student}',
        f'its distillation config:      {config}',
        'export the student for mmpretrain (student.pth + student.py):',
        '  python tools/model_converters/export_student.py '
        f'{student} {osp.join(work_dir, "student.pth")} --config {config}',
        'draw teacher vs student features, channel by channel:',
        f'  python tools/analysis_tools/visualize_channels.py {config} '
        f'--checkpoint {student} --img {images[0] if images else "IMG"} '
        f'--out {osp.join(work_dir, "channels.png")}',
    ]


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmkd_bench.common import get_logger
    from mmkd_bench.efficacy import parse_settings, run_efficacy
    from mmkd_bench.efficacy_report import summarize
    from mmkd_bench.task_base import PLAIN, TEACHER
    from mmkd_bench.tasks import TASKS
    keep_distilled_checkpoint(TASKS['digits'])
    os.makedirs(args.work_dir, exist_ok=True)
    logger = get_logger(osp.join(args.work_dir, 'demo.log'))
    settings = parse_settings([f'digits.{kv}' for kv in args.set or []])
    t0 = time.perf_counter()
    report = run_efficacy(['digits'], ['cwt'], [args.seed],
                          args.work_dir,
                          quick=args.quick,
                          settings=settings)
    minutes = (time.perf_counter() - t0) / 60
    entry = report['digits']
    task = entry['task']
    rows = {r['model']: r for r in summarize(entry['runs'], ['cwt'])}
    s = task.settings
    names = {
        TEACHER: 'teacher  ResNet-18',
        PLAIN: f"student  MobileNetV1 {s['widen_factor']}x",
        'cwt': f"student  MobileNetV1 {s['widen_factor']}x + CWT",
    }
    lines = ['', f"{'model':<34} {'top-1 (%)':>9} {'gain':>7}"]
    for key, label in names.items():
        r = rows[key]
        gain = '' if r['gain'] is None else f"{r['gain']:+.2f}"
        lines.append(f"{label:<34} {r['mean']:>9.2f} {gain:>7}")
    lines.append(
        f"(digits: {s['num_train']} train images, {s['img_size']} px, "
        f"{s['epochs']} epochs, seed {args.seed}; {minutes:.1f} min)")
    lines += next_steps(task, args.seed, args.work_dir, TEACHER)
    logger.info('\n'.join(lines))
    summary = {key: rows[key]['mean'] for key in names}
    summary['gain'] = rows['cwt']['gain']
    summary['minutes'] = minutes
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    if not all(math.isfinite(summary[k]) for k in names):
        raise SystemExit('a run produced no accuracy')
    return summary


if __name__ == '__main__':
    main()
