"""Efficacy results: per-model mean +- std and the paired gain over the
plain student, as markdown, JSON and a bar chart per task."""
import json
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

from .common import machine_line
from .plots import bar_chart
from .stats import paired_stats
from .task_base import PLAIN, TEACHER, RunResult, Task


def summarize(runs: Sequence[RunResult], order: Sequence = ()) -> List[dict]:
    """Mean, std and paired gain over the plain student per model.

    Args:
        runs (Sequence[RunResult]): Runs of one task.
        order (Sequence[str]): Methods in the order to list them.

    Returns:
        list[dict]: ``model, n, mean, std, gain, gain_std, paired, time``
        per model: teacher first, then plain, then the methods. ``gain`` is
        the mean over seeds of (method - plain) on the same seed,
        ``gain_std`` its std, ``paired`` all of :func:`.stats.paired_stats`
        (t, p, wins); ``std`` is the sample std over seeds (0 for one
        seed).
    """
    by_model: Dict[str, Dict[int, RunResult]] = {}
    for r in runs:
        by_model.setdefault(r.model, {})[r.seed] = r
    names = [TEACHER, PLAIN] + [m for m in order if m in by_model]
    names += [m for m in by_model if m not in names]
    plain = by_model.get(PLAIN, {})
    rows = []
    for m in names:
        if m not in by_model:
            continue
        vals = [r.value for _, r in sorted(by_model[m].items())]
        row = dict(
            model=m,
            n=len(vals),
            mean=statistics.fmean(vals),
            std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
            time=statistics.fmean(r.train_time for r in by_model[m].values()),
            values=vals,
            gain=None,
            gain_std=None,
            paired=None)
        if m not in (TEACHER, PLAIN) and plain:
            diffs = [
                r.value - plain[s].value
                for s, r in sorted(by_model[m].items()) if s in plain
            ]
            if diffs:
                row['paired'] = paired_stats(diffs)
                row['gain'] = row['paired']['mean']
                row['gain_std'] = row['paired']['std'] or 0.0
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict], metric_label: str) -> str:
    """Markdown table: model, seeds, mean +- std, paired gain over plain
    (mean +- std, t, p, wins), time."""
    lines = [
        f'| model | seeds | {metric_label} mean +- std | gain over '
        'plain (mean +- std of paired differences) | paired t | p '
        '(two-sided) | wins / seeds | time / run (s) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|'
    ]
    for r in rows:
        gain, t, p, wins = '', '', '', ''
        if r['gain'] is not None:
            ps = r['paired']
            gain = f"{r['gain']:+.2f} +- {r['gain_std']:.2f}"
            t = '' if ps['t'] is None else f"{ps['t']:.2f}"
            p = ('' if ps['p'] is None else
                 '< 0.001' if ps['p'] < 1e-3 else f"{ps['p']:.3f}")
            wins = f"{ps['wins']} / {ps['n']}"
        lines.append(f"| {r['model']} | {r['n']} | {r['mean']:.2f} +- "
                     f"{r['std']:.2f} | {gain} | {t} | {p} | {wins} | "
                     f"{r['time']:.0f} |")
    return '\n'.join(lines)


def _precision_section(runs: Sequence[RunResult], label: str) -> List[str]:
    """The fp32 against the reduced-precision teacher, paired by seed,
    where both arms of a method ran (``<method>`` and ``<method>_bf16``)."""
    from .precision import format_precision_efficacy
    models = {r.model for r in runs}
    if not any(m.endswith('_bf16') and m[:-5] in models for m in models):
        return []
    table = format_precision_efficacy(
        [dict(model=r.model, seed=r.seed, value=r.value) for r in runs],
        label=label)
    return [
        'Teacher precision: each method with its teacher in fp32 and in '
        'bf16 (channels-last), same seeds; the difference is paired by '
        'seed.', '', table, ''
    ]


def write_report(report: Dict[str, dict],
                 out_dir: str,
                 methods: Sequence[str],
                 command: str = '',
                 total_time: Optional[float] = None) -> str:
    """Write ``results.md``, ``results.json`` and ``<task>.png``.

    Args:
        report (dict): What :func:`.efficacy.run_efficacy` returned.
        out_dir (str): Output directory.
        methods (Sequence[str]): Methods, in table order.
        command (str): The command line, quoted in the report.
        total_time (float, optional): Seconds of the whole run.

    Returns:
        str: The markdown text.
    """
    md = ['# Efficacy benchmark', '', f'Machine: {machine_line()}.']
    if total_time is not None:
        md[-1] += f' Whole run: {total_time / 60:.1f} min.'
    md.append('')
    if command:
        md += ['```bash', command, '```', '']
    data = {}
    for name, entry in report.items():
        task: Task = entry['task']
        rows = summarize(entry['runs'], methods)
        png = bar_chart(
            rows, osp.join(out_dir, f'{name}.png'),
            f'{name}: mean +- std over seeds (dots: seeds; '
            'labels: mean, gain over plain)', task.metric_label)
        md += [f'## {name}', ''] + [f'- {d}' for d in task.describe()]
        md += [f"- wall time of the task: {entry['time'] / 60:.1f} min", '']
        md += [markdown_table(rows, task.metric_label), '']
        md += _precision_section(entry['runs'], task.metric_label)
        for m, (path, how) in task.sources.items():
            md.append(f'- {m}: `{path}` ({how})')
        for m, why in entry['skipped'].items():
            md.append(f'- {m}: not run ({why})')
        md += ['', f'![{name}]({osp.basename(png)})', '']
        data[name] = dict(
            settings=task.settings,
            rows=rows,
            skipped=entry['skipped'],
            sources=task.sources,
            time=entry['time'],
            runs=[r.__dict__ for r in entry['runs']])
    text = '\n'.join(md)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(text)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(
            dict(
                command=command,
                total_time=total_time,
                machine=machine_line(),
                tasks=data),
            f,
            indent=2)
    return text
