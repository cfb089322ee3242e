"""Plot task losses and distillation terms over iterations.

Reads the scalars MMEngine's ``LocalVisBackend`` writes during training,
``WORK_DIR/<timestamp>/vis_data/scalars.json`` (one JSON object per
logged iteration; validation metrics are on lines of their own), and draws
two panels:

* task losses: every ``loss_*`` term of the host model (``loss_cls``,
  ``loss_bbox``, ``decode.loss_ce``, ...), their sum, and the logged
  ``loss`` (task + distill) when it is that total. (Logs of mmpretrain
  students written before the distiller renamed the head's ``loss`` to
  ``loss_cls`` hold the cross-entropy under ``loss``; it is then drawn as a
  task term, ``loss (the host's own term)``.)
* distillation terms: every ``loss_distill_<name>`` (one per distilled
  pair), their sum, and the distill / task ratio at the first and last
  logged iteration (CWT's one hyper-parameter, the loss weight, is usually
  chosen so that this ratio starts near 1).

Example::

    python tools/analysis_tools/plot_distill_curves.py \\
        work_dirs/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco \\
        --out curves.png

By default the latest run of the work directory is read; ``--all-runs``
joins every run (e.g. a training resumed several times), later runs
replacing earlier values of the same step.
"""
import argparse
import glob
import json
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.logging import MMLogger

DISTILL_PREFIX = 'loss_distill_'
LOGGER_NAME = 'mmkd_channel'
Series = Dict[str, Dict[int, float]]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line of the tool (``argv=None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(
        description='Plot task losses and loss_distill_* terms from '
        "MMEngine's scalars.json")
    parser.add_argument(
        'work_dir',
        help='work directory of a training run (or a run directory '
        '<work_dir>/<timestamp>, or a scalars.json file)')
    parser.add_argument('--out', required=True, help='output PNG file')
    parser.add_argument(
        '--all-runs',
        action='store_true',
        help='join all runs of the work directory instead of the latest')
    parser.add_argument(
        '--smooth',
        type=int,
        default=1,
        help='moving-average window in logged points (1: raw values)')
    parser.add_argument(
        '--log-y', action='store_true', help='logarithmic y axes')
    parser.add_argument('--dpi', type=int, default=100, help='figure dpi')
    args = parser.parse_args(argv)
    if args.smooth < 1:
        parser.error('--smooth must be >= 1')
    return args


def find_scalar_files(path: str, all_runs: bool = False) -> List[str]:
    """The ``scalars.json`` file(s) to read for ``path``.

    Args:
        path (str): A ``scalars.json`` file, a run directory
            (``<work_dir>/<timestamp>``) or a work directory.
        all_runs (bool): Return every run of a work directory, oldest
            first, instead of the latest only.

    Returns:
        list[str]: Paths of ``scalars.json`` files.

    Raises:
        FileNotFoundError: If nothing is found, naming where it looked.
    """
    if osp.isfile(path):
        return [path]
    own = osp.join(path, 'vis_data', 'scalars.json')
    if osp.isfile(own):
        return [own]
    pattern = osp.join(path, '*', 'vis_data', 'scalars.json')
    # run directories are named by timestamp (YYYYmmdd_HHMMSS), so the
    # lexical order is the chronological one
    files = sorted(
        glob.glob(pattern),
        key=lambda f: osp.basename(osp.dirname(osp.dirname(f))))
    if not files:
        raise FileNotFoundError(
            f'no scalars.json under {path!r} (looked for {pattern}). Train '
            "with MMEngine's LocalVisBackend (the default visualizer) to "
            'write it.')
    return files if all_runs else files[-1:]


def read_scalars(files: Sequence[str]) -> Series:
    """Training scalars per key and step from ``scalars.json`` files.

    Validation / test lines (no ``iter`` key, or keys with a ``val/`` or
    ``test/`` prefix) are skipped; a ``train/`` prefix
    (``log_with_hierarchy=True``) is removed. Later files win on equal
    steps.

    Returns:
        dict: ``key -> {step: value}``.

    Examples:
        >>> import json, tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), 'scalars.json')
        >>> lines = [dict(loss=2.0, loss_cls=1.5, loss_distill_fpn=0.5,
        ...               iter=1, step=1), {'coco/bbox_mAP': 0.1, 'step': 1}]
        >>> with open(f, 'w') as fp:
        ...     _ = fp.write('\\n'.join(json.dumps(d) for d in lines))
        >>> read_scalars([f])['loss_distill_fpn']
        {1: 0.5}
    """
    series: Series = OrderedDict()
    for path in files:
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(
                        f'{path}:{line_no}: not a JSON line ({e})') from None
                if 'iter' not in rec or any(
                        k.startswith(('val/', 'test/')) for k in rec):
                    continue
                step = int(rec.get('step', rec['iter']))
                for key, value in rec.items():
                    if key in ('iter', 'step', 'epoch'):
                        continue
                    if key.startswith('train/'):
                        key = key[len('train/'):]
                    if isinstance(value, (int, float)):
                        series.setdefault(key, {})[step] = float(value)
    return series


def is_loss(key: str) -> bool:
    """Whether a logged key is a loss term (mmseg logs ``decode.loss_ce``)."""
    return key.split('.')[-1].startswith('loss')


def split_losses(series: Series) -> Dict[str, List[str]]:
    """Group logged keys into ``task``, ``distill`` and ``total``.

    Examples:
        >>> keys = ['lr', 'loss', 'loss_cls', 'decode.loss_ce',
        ...         'loss_distill_fpn', 'acc']
        >>> groups = split_losses({k: {} for k in keys})
        >>> groups['task'], groups['distill'], groups['total']
        (['loss_cls', 'decode.loss_ce'], ['loss_distill_fpn'], ['loss'])
    """
    groups: Dict[str, List[str]] = dict(task=[], distill=[], total=[])
    for key in series:
        if key == 'loss':
            groups['total'].append(key)
        elif key.startswith(DISTILL_PREFIX):
            groups['distill'].append(key)
        elif is_loss(key):
            groups['task'].append(key)
    return groups


def total_is_sum(series: Series, groups: Dict[str, List[str]]) -> bool:
    """Whether the logged ``loss`` is the sum of the task and distill terms.

    It is, in logs this project writes: MMEngine logs the back-propagated
    total as ``loss``, and the distiller renames a host term of that name
    (mmpretrain's heads return one) to ``loss_cls``. In older logs of an
    mmpretrain student ``loss`` is the head's cross-entropy, which
    overwrote the total; :func:`split_losses` then counts it as a task term.

    Examples:
        >>> s = {'loss': {1: 3.0}, 'loss_cls': {1: 2.0},
        ...      'loss_distill_a': {1: 1.0}}
        >>> total_is_sum(s, split_losses(s))
        True
        >>> s = {'loss': {1: 2.0}, 'loss_distill_a': {1: 1.0}}
        >>> total_is_sum(s, split_losses(s))
        False
    """
    if 'loss' not in series:
        return False
    parts = summed(series, groups['task'] + groups['distill'])
    steps = set(parts) & set(series['loss'])
    if not steps:
        return False
    return all(
        abs(series['loss'][s] - parts[s]) <= 1e-3 * max(1.0, abs(parts[s]))
        for s in steps)


def summed(series: Series, keys: Sequence[str]) -> Dict[int, float]:
    """Sum of several series at the steps where all of them are logged."""
    if not keys:
        return {}
    steps = set.intersection(*(set(series[k]) for k in keys))
    return {s: sum(series[k][s] for k in keys) for s in sorted(steps)}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists).

    Examples:
        >>> smooth(np.array([1., 2., 3., 4.]), 2)
        array([1. , 1.5, 2.5, 3.5])
    """
    if window <= 1 or len(values) == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def plot(series: Series,
         out: str,
         title: str,
         window: int = 1,
         log_y: bool = False,
         dpi: int = 100) -> Dict[str, List[str]]:
    """Draw the two panels and save them to ``out``.

    Returns:
        dict: The key groups that were drawn (see :func:`split_losses`).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    groups = split_losses(series)
    if groups['total'] and not total_is_sum(series, groups):
        # an old mmpretrain log: `loss` is the head's term, not the total
        groups['task'].insert(0, groups['total'].pop())
    task_sum = summed(series, groups['task'])
    distill_sum = summed(series, groups['distill'])
    fig, axes = plt.subplots(2, 1, figsize=(9, 7.5), dpi=dpi, sharex=True)

    def line(ax, data: Dict[int, float], label: str, **kwargs) -> None:
        if not data:
            return
        x = np.array(sorted(data))
        y = np.array([data[s] for s in x])
        if len(x) <= 30:
            kwargs.setdefault('marker', '.')
        drawn = ax.plot(x, smooth(y, window), label=label, **kwargs)
        if window > 1:  # the raw values, faint, in the same colour
            ax.plot(x, y, alpha=0.25, color=drawn[0].get_color(), lw=0.8)

    ax = axes[0]
    for key in groups['task']:
        label = key if key != 'loss' else "loss (the host's own term)"
        line(ax, series[key], label, lw=1.2)
    if len(groups['task']) > 1:
        line(ax, task_sum, 'task total', color='black', lw=2.0)
    for key in groups['total']:
        line(
            ax,
            series[key],
            'loss (task + distill)',
            color='grey',
            lw=1.0,
            ls='--')
    ax.set_title('task losses')
    ax.set_ylabel('loss')

    ax = axes[1]
    for key in groups['distill']:
        line(ax, series[key], 'distill/' + key[len(DISTILL_PREFIX):], lw=1.2)
    if len(groups['distill']) > 1:
        line(ax, distill_sum, 'distill total', color='black', lw=2.0)
    if groups['distill']:
        steps = sorted(set(task_sum) & set(distill_sum))
        note = ''
        if steps and task_sum[steps[0]] and task_sum[steps[-1]]:
            first = distill_sum[steps[0]] / task_sum[steps[0]]
            last = distill_sum[steps[-1]] / task_sum[steps[-1]]
            note = (f' (distill / task: {first:.3g} at step {steps[0]}, '
                    f'{last:.3g} at step {steps[-1]})')
        ax.set_title('distillation terms loss_distill_*' + note, fontsize=10)
    else:
        ax.set_title('distillation terms')
        ax.text(
            0.5,
            0.5,
            'no loss_distill_* terms in this log',
            ha='center',
            va='center',
            transform=ax.transAxes)
    ax.set_ylabel('loss')
    ax.set_xlabel('iteration')
    for ax in axes:
        if log_y and ax.lines:
            ax.set_yscale('log')
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc='best')
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return groups


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Run the tool; returns the path of the written PNG."""
    args = parse_args(argv)
    logger = MMLogger.get_instance(LOGGER_NAME)
    files = find_scalar_files(args.work_dir, args.all_runs)
    series = read_scalars(files)
    if not any(is_loss(k) for k in series):
        raise ValueError(f'no training losses in {files}: is this a '
                         'training run?')
    steps = sorted(set().union(*(set(v) for v in series.values())))
    logger.info(f'read {len(steps)} logged iterations ({steps[0]}..'
                f'{steps[-1]}) from {", ".join(files)}')
    run = osp.basename(osp.dirname(osp.dirname(osp.abspath(files[-1]))))
    title = f'{osp.basename(osp.abspath(args.work_dir))} ({run})'
    groups = plot(series, args.out, title, args.smooth, args.log_y, args.dpi)
    logger.info(f"task losses {groups['task']}, distill terms "
                f"{groups['distill']}; wrote {args.out}")
    return args.out


if __name__ == '__main__':
    main()
