"""What distillation buys: teacher, plain student and distilled students.

For each task it trains (MMEngine Runner, CPU or GPU) a teacher once, then
for every seed the plain student and the student distilled with each
applicable method, all from shipped configs plus the same overrides for
the generated data, and writes ``results.md`` (mean +- std and the gain
over the plain student), ``results.json`` and a bar chart per task
(``<task>.png``) into ``--out-dir``. See
``mmkd_channel/benchmark/efficacy.py``.

Examples:
    # the full digits benchmark (5 seeds, every method)
    python tools/analysis_tools/benchmark_efficacy.py
    # tiny detection / segmentation as well, 2 runs at a time
    python tools/analysis_tools/benchmark_efficacy.py \\
        --tasks digits coco cityscapes --jobs 2
    # a smoke run in about a minute
    python tools/analysis_tools/benchmark_efficacy.py --quick --seeds 2
"""
import argparse
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmkd_channel.benchmark.efficacy import ALL_METHODS, TASKS
    parser = argparse.ArgumentParser(
        description='Efficacy of distillation: plain vs distilled students '
        'over seeds')
    parser.add_argument(
        '--seeds', type=int, default=5, help='student seeds 0 .. N-1')
    parser.add_argument(
        '--methods', nargs='+', default=list(ALL_METHODS), choices=ALL_METHODS)
    parser.add_argument(
        '--tasks', nargs='+', default=['digits'], choices=list(TASKS))
    parser.add_argument(
        '--out-dir', default=osp.join(REPO, 'work_dirs', 'benchmark_efficacy'))
    parser.add_argument(
        '--quick',
        action='store_true',
        help='tiny data and one epoch (smoke test)')
    parser.add_argument(
        '--jobs',
        type=int,
        default=1,
        help='runs trained in parallel processes')
    parser.add_argument(
        '--set',
        nargs='+',
        metavar='TASK.KEY=VALUE',
        help='override a task setting, e.g. '
        'digits.epochs=20 digits.cwt_weight=10')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmkd_channel.benchmark.efficacy import (get_logger, parse_settings,
                                                 run_efficacy, write_report)
    os.makedirs(args.out_dir, exist_ok=True)
    logger = get_logger(osp.join(args.out_dir, 'benchmark.log'))
    command = 'python ' + ' '.join(
        [osp.relpath(osp.abspath(__file__), REPO)] +
        (sys.argv[1:] if argv is None else list(argv)))
    t0 = time.perf_counter()
    report = run_efficacy(
        args.tasks,
        args.methods,
        list(range(args.seeds)),
        args.out_dir,
        quick=args.quick,
        jobs=args.jobs,
        settings=parse_settings(args.set))
    text = write_report(
        report,
        args.out_dir,
        args.methods,
        command,
        total_time=time.perf_counter() - t0)
    logger.info('\n' + text)
    logger.info(f"wrote {osp.join(args.out_dir, 'results.md')}, "
                'results.json and ' + ', '.join(f'{t}.png'
                                                for t in args.tasks))
    return report


if __name__ == '__main__':
    main()
