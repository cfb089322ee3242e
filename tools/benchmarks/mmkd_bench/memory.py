"""Peak memory of the overhead benchmark's phases.

On CUDA ``torch.cuda.max_memory_allocated`` per phase; on CPU each phase
runs in a fresh process that builds the same models and reports its peak
RSS (``VmHWM``, reset after building via ``/proc/self/clear_refs``) minus
its RSS before the phase, i.e. activations, gradients and optimizer state.
"""
import gc
import math
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Dict, Sequence

import torch

MEMORY_PHASES = ('student', 'teacher', 'distill')


def _proc_status() -> Dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in kB."""
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key = line.split(':')[0]
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(line.split()[1])
    return out


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def measure_memory_in_process(bench, phase: str, repeats: int = 2) -> dict:
    """Peak memory of ``phase`` in this process (CUDA: exact; CPU: RSS).

    Returns:
        dict: ``peak_mb`` (absolute peak during the phase) and ``delta_mb``
        (peak minus the memory in use before it).
    """
    if bench.device.startswith('cuda'):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for r in range(repeats):
            bench.run(phase, bench.prepare(phase, r % len(bench.batches)))
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return dict(peak_mb=peak / 2**20, delta_mb=(peak - before) / 2**20)
    gc.collect()
    reset = _reset_peak_rss()
    before = _proc_status()['VmRSS']
    for r in range(repeats):
        bench.run(phase, bench.prepare(phase, r % len(bench.batches)))
    peak = _proc_status()['VmHWM']
    return dict(
        peak_mb=peak / 1024,
        delta_mb=(peak - before) / 1024 if reset else math.nan)


def _memory_worker(kwargs: dict, phase: str, repeats: int) -> dict:
    """Fresh-process entry: build everything, then run one phase."""
    import logging
    logging.getLogger('mmengine').setLevel(logging.ERROR)
    torch.set_num_threads(kwargs.pop('threads'))
    from .overhead_phases import OverheadBenchmark
    bench = OverheadBenchmark(**kwargs)
    return measure_memory_in_process(bench, phase, repeats)


def measure_memory(kwargs: dict,
                   phases: Sequence[str] = MEMORY_PHASES,
                   repeats: int = 2) -> Dict[str, dict]:
    """Peak RSS per phase, each in a fresh process (CPU).

    Args:
        kwargs (dict): :class:`OverheadBenchmark` arguments.
        phases (Sequence[str]): Phases to measure.
        repeats (int): Calls of the phase (the first allocates gradients
            and optimizer state).
    """
    out = {}
    ctx = get_context('spawn')
    for phase in phases:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            out[phase] = pool.submit(
                _memory_worker, dict(kwargs, threads=torch.get_num_threads()),
                phase, repeats).result()
    return out
