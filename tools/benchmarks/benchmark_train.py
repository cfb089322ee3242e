"""Reproduce the model-index table: teacher, baseline and distilled runs.

For every distilled config in ``model-index.yml`` (or those whose name
matches ``--models``) it schedules the teacher's evaluation, the student
baseline (the host config the distillation config inherits) and the
distilled run, as Slurm jobs or local ``torchrun`` / single-process runs.
Finished runs are skipped, so the same command resumes. ``--summary``
gathers the final metrics into ``summary.md`` / ``summary.json``,
``--publish`` exports the distilled students (sha256-named) and writes the
measured results into the metafiles.

``--task digits`` (or ``coco`` / ``cityscapes``, tiny generated data) runs
the efficacy benchmark instead: a teacher trained once, then the plain and
the distilled students over ``--seeds`` seeds, reported with paired
statistics (``results.md``, ``results.json``, ``<task>.png``).

Examples:
    # a GPU cluster: write one Slurm job per run, then submit them
    python tools/benchmarks/benchmark_train.py --launcher slurm \\
        --partition P --work-dir work_dirs/bench --gpus 8 --run
    python tools/benchmarks/benchmark_train.py --work-dir work_dirs/bench \\
        --summary
    # this machine (CPU): the four CWT tasks on tiny data, 2 processes each
    python tools/benchmarks/benchmark_train.py --launcher pytorch --gpus 2 \\
        --tiny --models '^cwt_' --work-dir work_dirs/bench_tiny
    # efficacy on digits: CWT over 10 seeds, 2 runs at a time
    python tools/benchmarks/benchmark_train.py --task digits --methods cwt \\
        --seeds 10 --jobs 2 --work-dir work_dirs/benchmark_efficacy
"""
import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
if HERE not in sys.path:  # mmkd_bench, also when imported by the tests
    sys.path.insert(0, HERE)


def parse_args(argv=None) -> argparse.Namespace:
    from mmkd_bench.task_base import ALL_METHODS, VARIANTS
    from mmkd_bench.tasks import TASKS
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.split('\n')[2:]))
    p.add_argument('--work-dir', required=True, help='root of all runs')
    p.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--partition', default='', help='Slurm partition')
    p.add_argument(
        '--models', help='regex: model-index names to run (re.search)')
    p.add_argument(
        '--gpus', type=int, default=8, help='processes (GPUs) per run')
    p.add_argument('--amp', action='store_true', help='mixed precision')
    p.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr from the config\'s base batch size to GPUS x '
        'batch')
    p.add_argument('--port', type=int, default=29500, help='first port')
    p.add_argument('--cpus-per-task', type=int, default=5)
    p.add_argument(
        '--sbatch-args',
        default='',
        help='extra #SBATCH options, e.g. "--time=72:00:00"')
    p.add_argument(
        '--run', action='store_true', help='Slurm: also submit submit.sh')
    p.add_argument(
        '--tiny',
        action='store_true',
        help='shrink every config to generated tiny data (CPU smoke test)')
    p.add_argument(
        '--summary', action='store_true', help='gather results only')
    p.add_argument(
        '--publish',
        action='store_true',
        help='export the distilled students and fill the metafiles')
    p.add_argument('--base-url', help='--publish: URL the weights go to')
    p.add_argument(
        '--tolerance',
        type=float,
        default=1.0,
        help='|gain - published gain| that counts as reproduced')
    p.add_argument(
        '--model-index',
        default=osp.join(REPO, 'model-index.yml'),
        help='the model index (its metafiles are what --publish edits)')
    # efficacy tasks
    p.add_argument(
        '--task',
        default='model-index',
        choices=['model-index'] + list(TASKS),
        help='model-index pairs (default) or an efficacy task')
    p.add_argument('--seeds', type=int, default=5, help='efficacy seeds')
    p.add_argument(
        '--methods',
        nargs='+',
        default=list(ALL_METHODS),
        choices=list(VARIANTS),
        help='efficacy methods / variants (e.g. cwt_bf16: CWT with a bf16 '
        'teacher)')
    p.add_argument('--jobs', type=int, default=1, help='local runs at a time')
    p.add_argument(
        '--quick', action='store_true', help='efficacy smoke settings')
    p.add_argument(
        '--set',
        nargs='+',
        metavar='TASK.KEY=VALUE',
        help='efficacy settings, e.g. digits.epochs=20')
    args = p.parse_args(argv)
    if args.launcher == 'slurm' and not (args.partition or args.summary
                                         or args.publish):
        p.error('--launcher slurm needs --partition')
    return args


def launch_options(args):
    from mmkd_bench.launch import LaunchOptions
    return LaunchOptions(
        launcher=args.launcher,
        gpus=args.gpus,
        amp=args.amp,
        auto_scale_lr=args.auto_scale_lr,
        partition=args.partition,
        port=args.port,
        cpus_per_task=args.cpus_per_task,
        srun_args=args.sbatch_args)


def submit(path, args, logger) -> None:
    """Show or run ``submit.sh``."""
    if path is None:
        logger.info('every run finished before; nothing to submit')
    elif args.run:
        subprocess.run(['bash', path], check=True)
    else:
        logger.info(f'wrote the job scripts; submit them with: bash {path}')


def model_index_benchmark(args, logger) -> dict:
    from mmkd_bench.model_index import load_pairs
    from mmkd_bench.summary import gather, write_summary
    repo = osp.dirname(osp.abspath(args.model_index))
    pairs = load_pairs(repo, args.models, osp.basename(args.model_index))
    if not pairs:
        raise SystemExit(f'no model-index entry with a teacher matches '
                         f'--models {args.models!r}')
    plan_file = osp.join(args.work_dir, 'plan.json')
    out: dict = dict(pairs=[p.name for p in pairs])
    if not (args.summary or args.publish):
        from mmkd_bench.launch import run_local, write_slurm
        from mmkd_bench.plan import plan_pairs
        tiny = None
        if args.tiny:
            from mmkd_bench.tiny import TinyData
            tiny = TinyData(osp.join(args.work_dir, 'data'))
        runs, entries = plan_pairs(pairs, args.work_dir, tiny)
        with open(plan_file, 'w') as f:
            json.dump(
                dict(
                    entries=entries,
                    runs=[r.to_dict() for r in runs],
                    tiny=args.tiny),
                f,
                indent=2)
        opts = launch_options(args)
        if args.launcher == 'slurm':
            out['submit'] = write_slurm(runs, opts, args.work_dir)
            submit(out['submit'], args, logger)
            return out
        out['status'] = run_local(runs, opts, logger, jobs=args.jobs)
    if not osp.isfile(plan_file):
        raise SystemExit(f'{plan_file} not found: schedule the runs first '
                         '(the same command without --summary)')
    with open(plan_file) as f:
        plan = json.load(f)
    by_name = {p.name: p for p in pairs}
    rows = gather(plan['entries'], by_name, args.work_dir, args.tolerance)
    header = ('# Model-index benchmark' +
              (' (tiny generated data: tests the pipeline, not the '
               'methods)' if plan.get('tiny') else ''))
    logger.info('\n' +
                write_summary(rows, args.work_dir, args.tolerance, header))
    out['rows'] = rows
    if args.publish:
        from mmkd_bench.publish import publish
        note = f"{args.gpus} GPUs, {time.strftime('%Y-%m-%d')}"
        out['published'] = publish(rows, by_name, plan['entries'],
                                   args.work_dir, repo, args.base_url, note)
        for p in out['published']:
            logger.info(f"published {p['checkpoint']} -> {p['metafile']}")
    return out


def efficacy_benchmark(args, argv, logger) -> dict:
    from mmkd_bench.efficacy import parse_settings, run_efficacy
    from mmkd_bench.efficacy_report import write_report
    command = 'python ' + ' '.join(
        shlex.quote(a) for a in [osp.relpath(osp.abspath(__file__), REPO)] +
        (sys.argv[1:] if argv is None else list(argv)))
    t0 = time.perf_counter()
    report = run_efficacy([args.task],
                          args.methods,
                          list(range(args.seeds)),
                          args.work_dir,
                          quick=args.quick,
                          jobs=args.jobs,
                          settings=parse_settings(args.set),
                          launch=launch_options(args),
                          execute=not args.summary)
    if args.launcher == 'slurm' and not args.summary:
        submit(report[args.task]['submit'], args, logger)
        return report
    text = write_report(
        report,
        args.work_dir,
        args.methods,
        command,
        total_time=time.perf_counter() - t0)
    logger.info('\n' + text)
    logger.info(f"wrote {osp.join(args.work_dir, 'results.md')}, "
                f'results.json and {args.task}.png')
    return report


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmkd_bench.common import get_logger
    os.makedirs(args.work_dir, exist_ok=True)
    logger = get_logger(osp.join(args.work_dir, 'benchmark.log'))
    if args.task == 'model-index':
        return model_index_benchmark(args, logger)
    return efficacy_benchmark(args, argv, logger)


if __name__ == '__main__':
    main()
