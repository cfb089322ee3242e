"""Time a distiller's train step against the student step + teacher forward.

For each config, in one process and on the same synthetic batches, the
benchmark times (a) the plain student's train step, (b) the teachers'
forward as the distiller runs it (each truncated after its own last
distilled module; several teachers are timed together and each alone),
(b') the same without truncation, (d) the connectors and losses
alone and (c) the distiller's train step, interleaved, and reports median
times, ``(c) / ((a) + (b))``, ``(c) / ((a) + (b) + (d))`` and the peak
memory of (a), (b) and (c). See ``mmkd_bench/overhead.py`` beside this
script.

Examples:
    python tools/benchmarks/benchmark_overhead.py \\
        configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py \\
        --iters 30
    python tools/benchmarks/benchmark_overhead.py configs/cwd/*.py \\
        --img-size 128 256 --json work_dirs/overhead.json
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Overhead of distillation: (c) distill step vs (a) '
        'student step + (b) teacher forward')
    parser.add_argument(
        'configs',
        nargs='+',
        metavar='CONFIG',
        help='distillation config(s), path or '
        'mmkd_channel::cwt/...py')
    parser.add_argument(
        '--iters', type=int, default=20, help='timed iterations per phase')
    parser.add_argument(
        '--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument(
        '--img-size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='image size (default: 128x128 mmdet and '
        'mmpretrain, 32x32 CIFAR backbones, 128x256 mmseg)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument(
        '--lr',
        type=float,
        default=0.0,
        help='learning rate of both optimizers (0: every '
        'iteration does the same work)')
    parser.add_argument(
        '--device',
        default=None,
        help="'cpu' or 'cuda' (default: cuda if available)")
    parser.add_argument(
        '--timer',
        choices=['wall', 'process'],
        default='wall',
        help='wall clock, or CPU time of the process (less '
        'sensitive to other jobs; best with --threads 1)')
    parser.add_argument(
        '--threads',
        type=int,
        default=0,
        help='torch threads (default: torch\'s)')
    parser.add_argument(
        '--no-memory',
        action='store_true',
        help='skip the peak-memory measurement')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='also profile (a) and (c) with torch.profiler '
        'and cProfile and print where (c) spends more')
    parser.add_argument('--json', metavar='OUT', help='write results here')
    parser.add_argument(
        '--no-progress',
        action='store_true',
        help='no progress bar (it goes to stderr)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    import torch
    from mmkd_bench.common import environment, get_logger
    from mmkd_bench.overhead import OverheadBenchmark, benchmark_config
    from mmkd_bench.profiling import profile_overhead
    from mmkd_bench.report import format_tables
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logger = get_logger()
    env = environment()
    logger.info('environment: ' + ', '.join(f'{k} {v}'
                                            for k, v in env.items()))
    results = []
    for config in args.configs:
        logger.info(f'benchmarking {config} ...')
        r = benchmark_config(
            config,
            img_size=args.img_size,
            batch_size=args.batch_size,
            iters=args.iters,
            warmup=args.warmup,
            lr=args.lr,
            device=device,
            memory=not args.no_memory,
            cfg_options=args.cfg_options,
            timer=args.timer,
            show_progress=not args.no_progress)
        results.append(r)
        logger.info(f"{osp.basename(config)}: ratio {r['ratio']:.3f} "
                    f"(paired {r['ratio_paired']:.3f}), truncation "
                    f"x{r['truncation_speedup']:.2f}, every teacher "
                    f"truncated {r['truncated']}, features identical "
                    f"{r['features_identical']} ({r['wall_time_s']:.0f} s)")
        if args.profile:
            bench = OverheadBenchmark(
                config,
                img_size=args.img_size,
                batch_size=args.batch_size,
                lr=args.lr,
                device=device,
                cfg_options=args.cfg_options)
            logger.info(profile_overhead(bench))
    logger.info('\n' + format_tables(results))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(
                dict(
                    command=' '.join(sys.argv),
                    environment=env,
                    results=results),
                f,
                indent=2)
        logger.info(f'wrote {args.json}')
    return results


if __name__ == '__main__':
    main()
