"""Gather the final metrics of a model-index benchmark into a table.

Per distilled config: the teacher's, the baseline's and the distilled
student's main metric (the metafile's first ``Results`` metric, read from
whatever the host evaluator wrote), the gain, the published gain and
whether the measured gain is within ``tolerance`` of it. Every metric the
evaluators wrote goes into the JSON.

A config with several teachers has one value per teacher: its row's
``teacher`` (and ``all_metrics['teacher']``, ``published['teacher']``) is
a dict ``teacher name -> value``, and the markdown cell lists
``name: value`` per teacher.
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Union

from .model_index import Pair
from .runs import read_metrics


def _fmt(value: Optional[float], sign: bool = False) -> str:
    if value is None:
        return '-'
    return f'{value:+.2f}' if sign else f'{value:.2f}'


def _value(metrics: dict, key: str, scale: float) -> Optional[float]:
    value = metrics.get(key)
    return None if value is None else value * scale


def _teacher_cell(value: Union[None, float, dict]) -> str:
    if isinstance(value, dict):
        return ', '.join(f'{n}: {_fmt(v)}' for n, v in value.items()) or '-'
    return _fmt(value)


def gather(entries: List[dict], pairs: Dict[str, Pair], work_dir: str,
           tolerance: float) -> List[dict]:
    """One row per planned pair (see :func:`.plan.plan_pairs`).

    Values are in the metafile's unit (mmdet's 0-1 mAP times 100).
    ``within_tolerance`` is None when the gain or the published gain is
    unknown.
    """
    rows = []
    for e in entries:
        pair = pairs.get(e['name'])
        key = pair.metric_key if pair else ''
        scale = pair.metric_scale if pair else 1.0
        row = dict(
            name=e['name'],
            config=e['config'],
            metric=pair.metric if pair else '',
            metric_key=key,
            baseline_from=e.get('baseline_from'),
            all_metrics={})
        for role in ('teacher', 'baseline', 'distilled'):
            run = e.get(role)
            if isinstance(run, dict):  # several teachers: one value each
                metrics = {
                    n: read_metrics(osp.join(work_dir, r)) if r else {}
                    for n, r in run.items()
                }
                row['all_metrics'][role] = metrics
                row[role] = {
                    n: _value(m, key, scale)
                    for n, m in metrics.items()
                }
                continue
            metrics = read_metrics(osp.join(work_dir, run)) if run else {}
            row['all_metrics'][role] = metrics
            if not key and metrics:  # no metafile entry: the first one
                key = next(iter(metrics))
            row[role] = _value(metrics, key, scale)
        row['gain'] = (None if None in (row['baseline'], row['distilled']) else
                       row['distilled'] - row['baseline'])
        published = dict(pair.published) if pair else {}
        row['published'] = published
        pub_gain = published.get('gain')
        row['within_tolerance'] = (None if None in (row['gain'], pub_gain) else
                                   abs(row['gain'] - pub_gain) <= tolerance)
        rows.append(row)
    return rows


def markdown(rows: List[dict], tolerance: float) -> str:
    """The summary as a markdown table."""
    lines = [
        '| config | metric | teacher | baseline | distilled | gain | '
        f'published gain | gain within {tolerance:g} |',
        '|---|---|---:|---:|---:|---:|---:|:---:|'
    ]
    for r in rows:
        ok = {True: 'yes', False: 'no', None: '-'}[r['within_tolerance']]
        teacher = _teacher_cell(r['teacher'])
        lines.append(f"| {r['name']} | {r['metric']} | {teacher} | "
                     f"{_fmt(r['baseline'])} | {_fmt(r['distilled'])} | "
                     f"{_fmt(r['gain'], True)} | "
                     f"{_fmt(r['published'].get('gain'), True)} | {ok} |")
    return '\n'.join(lines)


def write_summary(rows: List[dict],
                  work_dir: str,
                  tolerance: float,
                  header: str = '') -> str:
    """Write ``summary.md`` and ``summary.json`` into ``work_dir``."""
    text = '\n'.join(([header, ''] if header else []) + [
        markdown(rows, tolerance), '',
        '- = not run, not finished or not published. Baselines: '
    ] + [f"  - {r['name']}: {r['baseline_from']}" for r in rows]) + '\n'
    with open(osp.join(work_dir, 'summary.md'), 'w') as f:
        f.write(text)
    with open(osp.join(work_dir, 'summary.json'), 'w') as f:
        json.dump(dict(tolerance=tolerance, rows=rows), f, indent=2)
    return text
