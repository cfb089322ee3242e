"""Main job: a small real CWT distillation on scikit-learn's digits.

One seed of the efficacy benchmark's digits task
(``tools/benchmarks/mmkd_bench``, the same code and configs):
writes the 1,797 real handwritten digits in mmpretrain's ImageNet format
(300 train images, the rest for validation, 32 px), then trains with
MMEngine's Runner

  1. the teacher: mmpretrain's ResNet-18 (its own config),
  2. the plain student: this project's MobileNetV1 0.5x
     (configs/mobilenet_v1/mobilenet-v1_8xb32_in1k.py),
  3. the CWT student: the shipped
     configs/cwt/cwt_r50-mbv1_last-stage_100e_in1k.py with the teacher of
     step 1 and the student of step 2, same schedule,

and ends with their top-1 accuracies, the gain and the time. Nothing is
downloaded. ``--quick`` runs a seconds-long version on a tiny subset.
"""
import argparse
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmkd_bench.common import get_logger
    from mmkd_bench.efficacy import parse_settings, run_efficacy
    from mmkd_bench.efficacy_report import summarize
    from mmkd_bench.task_base import PLAIN, TEACHER
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
