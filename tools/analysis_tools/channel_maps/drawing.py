"""The figures of ``visualize_channels.py``, drawn with matplotlib.

:func:`draw` lays out the channel rows of spatial maps under a header (the
input image and the pair's facts); :func:`draw_vectors` draws 1x1 / pooled
features as bars and scatters. matplotlib is imported inside them, with
the ``Agg`` backend, so the tool runs without a display.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np

from .features import pearson


def header_lines(facts: dict, title: str,
                 loss_value: Optional[float]) -> List[str]:
    """The text beside the input image."""
    lines = [
        title,
        f"distill['{facts['name']}']: loss {facts['loss']}, connector "
        f"{facts['connector']}" + (f', teacher connector '
                                   f"{facts['teacher_connector']}"
                                   if facts['teacher_connector'] else ''),
        f"student '{facts['student_path']}': {facts['student_shape']}",
        f"teacher '{facts['teacher_path']}': {facts['teacher_shape']}",
        f"connector output: {facts['transformed_shape']}",
    ]
    if facts['levels'] is not None:
        lines.append(f"level {facts['level']} of {facts['levels']}")
    if loss_value is not None:
        lines.append(f"loss_distill_{facts['name']} on this image: "
                     f'{loss_value:.4g}')
    return lines


def draw_header(fig, image_cell, text_cell, image: np.ndarray,
                lines: List[str], **kwargs) -> None:
    """The input image in ``image_cell``, ``lines`` in ``text_cell``."""
    ax = fig.add_subplot(image_cell)
    ax.imshow(image)
    ax.set_title('input image', fontsize=9)
    ax.axis('off')
    ax = fig.add_subplot(text_cell)
    ax.axis('off')
    ax.text(
        0.0,
        1.0,
        '\n'.join(lines),
        va='top',
        ha='left',
        fontsize=9,
        family='monospace',
        transform=ax.transAxes,
        **kwargs)


def draw_vectors(values: dict,
                 facts: dict,
                 image: np.ndarray,
                 out: str,
                 title: str,
                 topk: int = 24,
                 dpi: int = 100,
                 loss_value: Optional[float] = None) -> List[str]:
    """Write the figure for 1x1 / pooled features.

    A header (image and facts); grouped bars of teacher, transformed
    student and (with the teacher's channel count) raw student for the
    ``topk`` teacher channels of largest ``|t_c|``; one scatter per student
    variant with the teacher's channel count, student against teacher over
    all channels, with ``y = x`` and Pearson's r. A raw student with another
    channel count gets a panel of its own values.

    Returns:
        list[str]: The titles of the panels drawn (for tests and logs).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t = values['teacher'].detach().float().cpu()
    students = []  # (label, values) with the teacher's channel count
    if values['transformed'] is not None:
        students.append((f"{facts['connector']}(student)",
                         values['transformed'].detach().float().cpu()))
    raw = values['student'].detach().float().cpu()
    raw_label = ('student (no connector)'
                 if facts['connector'] == 'none' else 'raw student')
    if raw.numel() == t.numel():
        students.append((raw_label, raw))
    compared = [(lbl, v) for lbl, v in students if v.numel() == t.numel()]
    extra = [] if raw.numel() == t.numel() else [raw]
    ncols = max(len(compared) + len(extra), 2)
    fig = plt.figure(figsize=(max(12.0, 5.0 * ncols), 11.0), dpi=dpi)
    outer = fig.add_gridspec(3, 1, height_ratios=[2.4, 3.0, 3.6])
    top = outer[0].subgridspec(1, 2, width_ratios=[1, 3])
    bottom = outer[2].subgridspec(1, ncols, wspace=0.35)
    lines = header_lines(facts, title, loss_value)
    lines.append(f'{t.numel()} channels without spatial extent: values '
                 'per channel')
    draw_header(fig, top[0, 0], top[0, 1], image, lines)
    titles = []

    k = min(topk, t.numel())
    channels = t.abs().topk(k).indices.tolist()
    ax = fig.add_subplot(outer[1])
    series = [(facts['teacher_label'], t)] + compared
    width = 0.8 / len(series)
    x = np.arange(k)
    colours = ['black', 'tab:orange', 'tab:blue', 'tab:green']
    for i, (label, v) in enumerate(series):
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            v[channels].numpy(),
            width,
            label=label,
            color=colours[i % len(colours)],
            alpha=0.85)
    ax.axhline(0, color='grey', lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([str(c) for c in channels], fontsize=7, rotation=90)
    ax.set_xlabel('channel (the top-k teacher channels by |value|)')
    ax.set_ylabel('value')
    bar_title = (f'per-channel values, top {k} of {t.numel()} teacher '
                 'channels')
    ax.set_title(bar_title, fontsize=10)
    ax.legend(fontsize=8)
    titles.append(bar_title)

    col = 0
    for label, v in compared:
        ax = fig.add_subplot(bottom[0, col])
        col += 1
        r = pearson(v, t)
        ax.scatter(t.numpy(), v.numpy(), s=8, alpha=0.6, color='tab:orange')
        lo = float(min(t.min(), v.min()))
        hi = float(max(t.max(), v.max()))
        ax.plot([lo, hi], [lo, hi],
                color='grey',
                lw=0.8,
                ls='--',
                label='student = teacher')
        ax.set_xlabel(f"{facts['teacher_label']} value")
        ax.set_ylabel(f'{label} value')
        panel = f'{label} vs teacher\nall {t.numel()} channels, r={r:.2f}'
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc='upper left')
        titles.append(panel)
    for v in extra:
        ax = fig.add_subplot(bottom[0, col])
        col += 1
        ax.bar(np.arange(v.numel()), v.numpy(), color='tab:blue', width=1.0)
        ax.set_xlabel('student channel')
        ax.set_ylabel('value')
        panel = (f'{raw_label}: {v.numel()} channels\n(the teacher has '
                 f'{t.numel()}: no channel-to-channel pairing)')
        ax.set_title(panel, fontsize=9, pad=14)
        titles.append(panel)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return titles


def draw(rows: List[dict],
         facts: dict,
         image: np.ndarray,
         out: str,
         title: str,
         dpi: int = 100,
         loss_value: Optional[float] = None,
         shared_scale: bool = False) -> None:
    """Write the figure: a header (image and facts) over the channel rows.

    Every map has its own colour scale; with ``shared_scale`` the teacher and
    transformed-student maps of a row share one (they are what the loss
    compares), and so do the softmax pair. A constant map says so instead of
    showing a colour bar.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ncols = max(max(len(r) for r in rows), 2)
    nrows = len(rows)
    shape = next(p['map'].shape for p in rows[0] if 'map' in p)
    # a panel is ~2.4 in wide; its height follows the map's aspect ratio,
    # plus room for a three-line title
    row_h = min(max(2.4 * shape[0] / shape[1], 0.8), 3.0) + 0.7
    fig = plt.figure(figsize=(3.0 * ncols, row_h * nrows + 2.6), dpi=dpi)
    grid = fig.add_gridspec(
        nrows + 1, ncols, height_ratios=[2.6] + [row_h] * nrows)
    lines = header_lines(facts, title, loss_value)
    lines.append(f'top-{len(rows)} teacher channels by mean(t^2): '
                 f"{facts['channels']}")
    lines.append('colour scale: teacher and the student map the loss sees '
                 'share one per row' if shared_scale else
                 'colour scale: every map its own (range in its title)')
    draw_header(fig, grid[0, 0], grid[0, 1:], image, lines, wrap=True)
    from matplotlib.ticker import MaxNLocator
    for i, row in enumerate(rows):
        limits: Dict[str, Tuple[float, float]] = {}
        for panel in row:
            if shared_scale and panel.get('scale'):
                m = panel['map']
                lo, hi = limits.get(panel['scale'], (np.inf, -np.inf))
                limits[panel['scale']] = (min(lo, float(m.min())),
                                          max(hi, float(m.max())))
        for j, panel in enumerate(row):
            ax = fig.add_subplot(grid[i + 1, j])
            title = panel['title']
            if 'map' in panel:
                lo, hi = float(panel['map'].min()), float(panel['map'].max())
                title += f'\nrange [{lo:.3g}, {hi:.3g}]'
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if 'text' in panel:
                ax.text(
                    0.5,
                    0.5,
                    panel['text'],
                    ha='center',
                    va='center',
                    fontsize=8,
                    transform=ax.transAxes)
                continue
            vmin, vmax = limits.get(panel.get('scale'), (None, None))
            im = ax.imshow(
                panel['map'].detach().float().cpu().numpy(),
                cmap='magma' if panel.get('scale') == 'p' else 'viridis',
                vmin=vmin,
                vmax=vmax,
                interpolation='nearest')
            if vmin is None and lo == hi:
                ax.text(
                    0.5,
                    0.5,
                    f'constant {lo:.3g}',
                    ha='center',
                    va='center',
                    fontsize=8,
                    color='white',
                    transform=ax.transAxes)
                continue
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            bar.locator = MaxNLocator(nbins=4)
            bar.update_ticks()
            bar.ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
