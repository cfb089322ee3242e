"""Where a distiller's train step spends more than student + teacher."""
import cProfile
import io
import pstats
from typing import Dict

import torch


def _op_times(bench, phase: str, iters: int) -> Dict[str, float]:
    """Self CPU time (ms per iteration) of every aten op in ``phase``."""
    from torch.profiler import ProfilerActivity, profile
    args = [bench.prepare(phase, i % len(bench.batches)) for i in range(iters)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for arg in args:
            bench.run(phase, arg)
    return {
        e.key: e.self_cpu_time_total / 1e3 / iters
        for e in prof.key_averages()
    }


def _python_profile(bench,
                    phase: str,
                    iters: int,
                    pattern: str = 'mmkd_channel') -> str:
    """cProfile of ``phase``: functions of files matching ``pattern``."""
    args = [bench.prepare(phase, i % len(bench.batches)) for i in range(iters)]
    prof = cProfile.Profile()
    prof.enable()
    for arg in args:
        bench.run(phase, arg)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats('cumulative').print_stats(pattern, 25)
    return out.getvalue()


def profile_overhead(bench, iters: int = 5, top: int = 15) -> str:
    """Ops where (c) spends more than (a) + (b), and the distiller's code.

    Args:
        bench (OverheadBenchmark): A built benchmark.
        iters (int): Profiled iterations per phase (after one warm-up).
        top (int): Rows to show.

    Returns:
        str: Two reports: aten ops sorted by ``c - a - b`` (self CPU ms per
        iteration) and a cProfile of the distill step restricted to
        ``mmkd_channel`` code (cumulative time).
    """
    for phase in ('student', 'teacher', 'distill'):
        bench.run(phase, bench.prepare(phase, 0))
    a = _op_times(bench, 'student', iters)
    b = _op_times(bench, 'teacher', iters)
    c = _op_times(bench, 'distill', iters)
    rows = []
    for op in set(a) | set(b) | set(c):
        diff = c.get(op, 0.0) - a.get(op, 0.0) - b.get(op, 0.0)
        rows.append((diff, op))
    rows.sort(reverse=True)
    total = (sum(c.values()) - sum(a.values()) - sum(b.values()))
    lines = [
        f'torch.profiler, self CPU ms per iteration ({iters} iters): '
        f'(c) - (a) - (b) = {total:+.1f} ms in total',
        f"{'op':<48} {'(a)':>9} {'(b)':>9} {'(c)':>9} {'c-a-b':>9}"
    ]
    for diff, op in rows[:top]:
        lines.append(f'{op[:48]:<48} {a.get(op, 0):9.2f} {b.get(op, 0):9.2f}'
                     f' {c.get(op, 0):9.2f} {diff:+9.2f}')
    lines.append('')
    lines.append('cProfile of (c), mmkd_channel code, cumulative:')
    lines.append(_python_profile(bench, 'distill', iters))
    torch.set_grad_enabled(True)
    return '\n'.join(lines)
