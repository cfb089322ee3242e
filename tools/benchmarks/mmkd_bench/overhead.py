"""Overhead benchmark: a distiller's train step against its physical floor.

In one process and on the same synthetic batches it times

* (a) ``student``: the plain student's train step (data preprocessing,
  forward with losses, backward, optimizer step through an
  ``OptimWrapper``), built from the distillation config's student dict;
* (b) ``teacher``: the teachers' forward as the distiller runs it
  (``FeatureDistiller.teacher_features`` of every teacher, one after the
  other, on preprocessed inputs, under ``no_grad``, each truncated after
  its own last recorded module unless the config sets
  ``truncate_teacher=False``); with several teachers each one's share is
  timed too (``split_times``);
* (b') ``teacher_full``: the same without truncation;
* (d) ``losses``: the distillation terms alone, connectors and losses
  forward and backward on recorded features plus the optimizer step over
  the connectors' parameters (the method's own compute, which no
  implementation of that method avoids);
* (c) ``distill``: the distiller's full train step,

interleaved (a, b, b', d, c, then b, b', d, c, a, ...: the order rotates
every iteration) so that drift and cache effects hit every phase alike.
The floor of any implementation is (a) + (b); the reported ``ratio`` is
``median(c) / (median(a) + median(b))``. ``ratio_with_losses``,
``c / (a + b + d)``, separates the distiller's own overhead (hooks,
recording, bookkeeping) from the cost of the connectors and losses.

The learning rate is 0 by default: every iteration then does the same work
on the same batches (an optimizer step costs the same whatever the lr, and
random weights trained at a real lr on noise drift to NaNs and change how
many proposals a detector keeps). Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` per phase; on CPU each phase runs in a
fresh process that builds the same models and reports its peak RSS
(``VmHWM``, reset after building via ``/proc/self/clear_refs``) minus its
RSS before the phase, i.e. activations, gradients and optimizer state.

The phases themselves are in :mod:`.overhead_phases`; this module runs one
config end to end and assembles its results.
"""
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch

from .memory import MEMORY_PHASES, measure_memory, measure_memory_in_process
from .overhead_phases import (PHASE_LABELS, PHASES, TEACHER_PHASES, TIMERS,
                              OverheadBenchmark, count_modules_run)

__all__ = [
    'PHASES', 'PHASE_LABELS', 'TIMERS', 'TEACHER_PHASES', 'OverheadBenchmark',
    'count_modules_run', 'paired_ratio', 'result_base', 'benchmark_config'
]


def _stats(values: List[float]) -> dict:
    q = statistics.quantiles(
        values, n=4) if len(values) > 1 else [values[0]] * 3
    return dict(
        median_ms=statistics.median(values) * 1e3,
        q1_ms=q[0] * 1e3,
        q3_ms=q[2] * 1e3,
        all_ms=[v * 1e3 for v in values])


def paired_ratio(times: Dict[str, list], phase: str) -> float:
    """Median over iterations of ``phase_i / (student_i + teacher_i)``."""
    return statistics.median(
        c / (a + b)
        for a, b, c in zip(times['student'], times['teacher'], times[phase]))


def result_base(bench: OverheadBenchmark, config: str, iters: int, warmup: int,
                times: Dict[str, list]) -> dict:
    """What every benchmark of :class:`OverheadBenchmark`'s kind reports:
    the setup, ``times`` per phase and, per teacher, ``teachers[name]
    ['times']`` (its share of each phase that runs the teachers)."""
    return dict(
        config=config,
        host=bench.kind,
        img_size=list(bench.img_size),
        batch_size=bench.batch_size,
        iters=iters,
        warmup=warmup,
        device=bench.device,
        threads=torch.get_num_threads(),
        timer=bench.timer,
        times={
            p: _stats(v)
            for p, v in times.items()
        },
        teachers={
            name:
            dict(times={
                p: _stats(v[name])
                for p, v in bench.split_times.items()
            })
            for name in bench.teacher_names
        })


def benchmark_config(config: str,
                     img_size: Optional[Sequence[int]] = None,
                     batch_size: int = 2,
                     iters: int = 20,
                     warmup: int = 3,
                     lr: float = 0.0,
                     device: str = 'cpu',
                     memory: bool = True,
                     cfg_options: Optional[dict] = None,
                     timer: str = 'wall',
                     show_progress: bool = False) -> dict:
    """Time (a), (b), (b'), (c) of one config and measure their memory.

    ``show_progress`` draws a progress bar with an ETA over the timed
    iterations.

    Returns:
        dict: JSON-ready results: ``times`` (per phase: median, quartiles
        and every sample, ms), ``ratio`` (``c / (a + b)`` of the medians),
        ``ratio_paired`` (median over iterations of ``c_i / (a_i + b_i)``),
        ``ratio_with_losses`` (``c / (a + b + d)``),
        ``truncation_speedup`` (``b' / b``), ``features_identical``,
        ``truncated`` (every teacher ran fewer modules truncated),
        ``teachers`` (per teacher: its share of (b) and (b'), its
        truncation speedup and check, see
        :meth:`OverheadBenchmark.truncation_check`), ``memory`` (per
        phase ``peak_mb`` and ``delta_mb``) and the setup.
    """
    kwargs = dict(
        config=config,
        img_size=img_size,
        batch_size=batch_size,
        lr=lr,
        device=device,
        cfg_options=cfg_options)
    t0 = time.perf_counter()
    bench = OverheadBenchmark(**kwargs, timer=timer)
    check = bench.truncation_check()
    times = bench.measure_times(iters, warmup, show_progress=show_progress)
    med = {p: statistics.median(v) for p, v in times.items()}
    paired = paired_ratio(times, 'distill')
    result = result_base(bench, config, iters, warmup, times)
    for name, detail in result['teachers'].items():
        t = detail['times']
        detail.update(
            check['teachers'][name],
            truncation_speedup=t['teacher_full']['median_ms'] /
            t['teacher']['median_ms'])
    result.update(
        truncate_teacher=bench.truncate,
        ratio=med['distill'] / (med['student'] + med['teacher']),
        ratio_with_losses=med['distill'] /
        (med['student'] + med['teacher'] + med['losses']),
        ratio_paired=paired,
        truncation_speedup=med['teacher_full'] / med['teacher'],
        features_identical=check['features_identical'],
        truncated=check['truncated'])
    if memory:
        kwargs['img_size'] = bench.img_size
        result['memory'] = ({
            p: measure_memory_in_process(bench, p)
            for p in MEMORY_PHASES
        } if device.startswith('cuda') else measure_memory(kwargs))
    result['wall_time_s'] = time.perf_counter() - t0
    return result
