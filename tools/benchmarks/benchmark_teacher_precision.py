"""Overhead of distillation with the teacher in fp32 and in bf16 / fp16.

For each config it times, interleaved in one process on the same
synthetic batches, (a) the plain student's train step, (b) the teacher's
forward in fp32 and in the reduced precision, and (c) the distiller's train
step with each teacher, and reports ``(c_lp) / ((a) + (b_fp32))``: the
reduced-precision step against the fp32 floor. See
``mmkd_bench/precision.py`` beside this script.

Examples:
    # every shipped config, bf16 channels-last teacher
    python tools/benchmarks/benchmark_teacher_precision.py \\
        configs/{cwt,cwd,ofd,sakd,kd}/*.py \\
        --json docs/benchmarks/teacher_precision_overhead.json
    # one config, quick
    python tools/benchmarks/benchmark_teacher_precision.py \\
        configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py \\
        --iters 3 --no-memory
    # at a training-like image size
    python tools/benchmarks/benchmark_teacher_precision.py \\
        configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py \\
        --size 512 512 --iters 3 --warmup 1 --threads 1 --timer process
"""
import argparse
import json
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Distillation overhead with an fp32 and a reduced-'
        'precision teacher')
    parser.add_argument('configs', nargs='+', help='distillation configs')
    parser.add_argument(
        '--teacher-dtype', default='bf16', choices=['bf16', 'fp16', 'auto'])
    parser.add_argument(
        '--no-channels-last',
        action='store_true',
        help='keep the reduced-precision teacher in the default layout')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='image size of the synthetic batches (default: the overhead '
        "benchmark's size for the host kind, e.g. 128 x 128 for mmdet)")
    parser.add_argument(
        '--no-memory',
        action='store_true',
        help='skip the fresh-process teacher peak-memory measurement')
    parser.add_argument(
        '--timer',
        default='wall',
        choices=['wall', 'process'],
        help='wall clock, or CPU time of this process (steadier on a '
        'shared machine, most faithful with --threads 1)')
    parser.add_argument(
        '--threads', type=int, default=0, help='torch threads (0: as is)')
    parser.add_argument('--json', metavar='OUT', help='write results here')
    return parser.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    import torch
    from mmkd_bench.common import environment, get_logger
    from mmkd_bench.precision import (benchmark_precision,
                                      format_precision_table)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logger = get_logger()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    results = []
    for config in args.configs:
        logger.info(f'benchmarking {config} ...')
        r = benchmark_precision(
            config,
            teacher_dtype=args.teacher_dtype,
            channels_last=not args.no_channels_last,
            iters=args.iters,
            warmup=args.warmup,
            memory=not args.no_memory,
            img_size=args.size,
            batch_size=args.batch_size,
            device=device,
            timer=args.timer)
        results.append(r)
        logger.info(f"{osp.basename(config)}: (c_lp)/((a)+(b)) "
                    f"{r['ratio_lp']:.3f}, fp32 {r['ratio']:.3f}, teacher "
                    f"x{r['teacher_speedup']:.2f} ({r['wall_time_s']:.0f} s)")
        if args.json:  # after every config: a long run keeps what it did
            os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
            with open(args.json, 'w') as f:
                json.dump(
                    dict(
                        environment=environment(),
                        command=' '.join(['python'] + sys.argv),
                        results=results),
                    f,
                    indent=1)
    logger.info('\n' + format_precision_table(results))
    return results


if __name__ == '__main__':
    main()
