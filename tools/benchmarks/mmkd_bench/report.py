"""Markdown tables of the overhead benchmark's results.

One row per config; a column per timed phase (``overhead.PHASES``) and per
ratio. A new phase gets its column in ``TIME_COLUMNS``.
"""
import os
from typing import Sequence

from .memory import MEMORY_PHASES

# (header, how to format one result) per column of the timing table, in
# order: the median ms of each phase, then the ratios.
TIME_COLUMNS = [
    ('(a) student step', lambda r: _ms(r, 'student')),
    ('(b) teacher fwd', lambda r: _ms(r, 'teacher')),
    ("(b') no truncation", lambda r: _ms(r, 'teacher_full')),
    ('(d) distill terms', lambda r: _ms(r, 'losses')),
    ('(c) distill step', lambda r: _ms(r, 'distill')),
    ('(c)/((a)+(b))', lambda r: f"**{r['ratio']:.3f}**"),
    ('paired', lambda r: f"{r['ratio_paired']:.3f}"),
    ('(c)/((a)+(b)+(d))', lambda r: f"{r['ratio_with_losses']:.3f}"),
    ("(b')/(b)", lambda r: f"{r['truncation_speedup']:.2f}"),
]


def _ms(result: dict, phase: str) -> str:
    return f"{result['times'][phase]['median_ms']:.1f}"


def _name(result: dict) -> str:
    return os.path.splitext(os.path.basename(result['config']))[0]


def format_teachers(results: Sequence[dict]) -> list:
    """Lines of a table with one row per teacher of every config: its
    share of (b) and (b') and how far its truncated forward ran."""
    lines = [
        '| config | teacher | (b) its fwd | (b\') its fwd, no truncation '
        '| (b\')/(b) | modules run: truncated / full / all | truncated '
        '| same features |', '|---|---|---:|---:|---:|---:|---|---|'
    ]
    for r in results:
        for name, t in (r.get('teachers') or {}).items():
            if 'modules_run' not in t:
                continue
            med = {p: v['median_ms'] for p, v in t['times'].items()}
            cut, full = t['modules_run']
            lines.append(
                f"| {_name(r)} | {name} | {med['teacher']:.1f} | "
                f"{med['teacher_full']:.1f} | "
                f"{t['truncation_speedup']:.2f} | {cut} / {full} / "
                f"{t['modules_total']} | {'yes' if t['truncated'] else 'no'}"
                f" | {'yes' if t['features_identical'] else 'no'} |")
    return lines


def format_tables(results: Sequence[dict]) -> str:
    """Markdown tables of times, ratios and memory for several configs."""
    lines = [
        '| config | size | ' + ' | '.join(h for h, _ in TIME_COLUMNS) + ' |',
        '|---|---|' + '---:|' * len(TIME_COLUMNS)
    ]
    for r in results:
        cells = [fmt(r) for _, fmt in TIME_COLUMNS]
        lines.append(f"| {_name(r)} | {r['img_size'][0]}x{r['img_size'][1]}"
                     f" | {' | '.join(cells)} |")
    lines.append('')
    if results:
        r = results[0]
        clock = ('wall-clock'
                 if r.get('timer', 'wall') == 'wall' else 'process CPU')
        lines.append(f"Median {clock} ms per call; batch {r['batch_size']}, "
                     f"{r['iters']} interleaved iterations, {r['device']}, "
                     f"{r['threads']} torch threads.")
        lines += ['', *format_teachers(results)]
    if any('memory' in r for r in results):
        lines += [
            '', '| config | peak memory (MB): (a) student step | '
            '(b) teacher fwd | (c) distill step | (c) - ((a) + (b)) '
            '|', '|---|---:|---:|---:|---:|'
        ]
        for r in results:
            m = r.get('memory')
            if not m:
                continue
            d = {p: m[p]['delta_mb'] for p in MEMORY_PHASES}
            lines.append(
                f"| {_name(r)} | {d['student']:.0f} | {d['teacher']:.0f} | "
                f"{d['distill']:.0f} | "
                f"{d['distill'] - d['student'] - d['teacher']:+.0f} |")
        lines.append('')
        lines.append('Peak memory of each phase above what was resident '
                     'before it (CPU: RSS of a fresh process running only '
                     'that phase; CUDA: max_memory_allocated).')
    return '\n'.join(lines)
