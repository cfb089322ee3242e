"""Bar charts of the efficacy results."""
import math
from typing import Sequence

from .task_base import PLAIN, TEACHER


def y_limits(rows: Sequence[dict]) -> tuple:
    """``(0, top)``: the axis starts at zero, since one starting near the
    lowest bar would magnify the differences; ``top`` leaves room for the
    labels above the highest seed or error bar."""
    vals = [v for r in rows for v in r['values'] if math.isfinite(v)]
    vals += [
        r['mean'] + r['std'] for r in rows
        if math.isfinite(r['mean'] + r['std'])
    ]
    top = max(vals, default=0.0)
    return 0.0, top * 1.15 if top > 0 else 1.0


def bar_chart(rows: Sequence[dict], path: str, title: str,
              metric_label: str) -> str:
    """Bar chart of mean +- std per model, seeds as dots; saved as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [r['model'] for r in rows]
    means = [r['mean'] for r in rows]
    stds = [r['std'] for r in rows]
    colours = [
        '#7f7f7f' if n == TEACHER else '#1f77b4' if n == PLAIN else '#ff7f0e'
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2.5, 4))
    ax.bar(names, means, yerr=stds, capsize=4, color=colours, alpha=0.85)
    for i, r in enumerate(rows):
        xs = [i] * len(r['values'])
        ax.scatter(xs, r['values'], s=10, color='black', zorder=3)
        label = f"{r['mean']:.1f}"
        if r['gain'] is not None:
            label += f"\n{r['gain']:+.1f}"
        top = max([r['mean'] + (r['std'] or 0)] +
                  [v for v in r['values'] if math.isfinite(v)])
        ax.annotate(
            label, (i, top),
            textcoords='offset points',
            xytext=(0, 4),
            ha='center',
            fontsize=8)
    ax.set_ylim(*y_limits(rows))
    ax.set_ylabel(metric_label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
