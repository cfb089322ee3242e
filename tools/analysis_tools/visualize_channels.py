"""Draw what channel-wise distillation aligns, channel by channel.

For one distilled pair of a :class:`mmkd_channel.FeatureDistiller` config,
one image goes through the host's test pipeline and both models; the
figure shows, for the top-k teacher channels (by mean activation energy
``mean(t_c ** 2)``), one row each:

* the teacher map (what the loss compares against: after the
  ``teacher_connector`` when there is one, e.g. OFD's margin ReLU);
* the raw student map: the same channel when the channel counts agree,
  otherwise the student channel most correlated with that teacher channel
  (the title says so and gives Pearson's r);
* the transformed student map: the connector's output (CWT's MLP), the
  map the loss compares with the teacher's;
* for ``ChannelWiseDivergence`` (CWD) losses, also the per-channel spatial
  softmax ``softmax(x_c / tau)`` of teacher and transformed student, the
  distributions whose KL divergence is the loss.

Example::

    python tools/analysis_tools/visualize_channels.py \\
        configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py \\
        --checkpoint work_dirs/cwt_frcnn.../epoch_24.pth \\
        --img demo.jpg --out channels.png --level 1 --topk 4

Every map has its own colour scale (its own range is in its title);
``--shared-scale`` puts the teacher and the student maps the loss compares
on one scale per row instead.

Features without a spatial extent, 1x1 maps (a classifier's last stage on
small inputs) and pooled ``(N, C)`` vectors, are drawn as per-channel
values instead: grouped bars of teacher and student for the top-k teacher
channels (by ``|t_c|``) and a scatter of student against teacher values
over all channels, with the line ``student = teacher``.

Without ``--checkpoint`` the student and connectors keep their
initialisation (useful to see what the untrained connector does); add
``--cfg-options model.teacher_ckpt=None`` to skip the teacher download.
"""
import argparse
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint, set_random_seed
from mmengine.utils import ProgressBar
from torch import Tensor

import mmkd_channel  # noqa: F401  (registers modules and safe loaders)
from mmkd_channel.models import ChannelWiseDivergence

LOGGER_NAME = 'mmkd_channel'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line of the tool (``argv=None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(
        description='Draw teacher, raw student and transformed student '
        'feature maps of the top-k teacher channels of a distilled pair')
    parser.add_argument('config', help='distillation config file')
    parser.add_argument(
        '--checkpoint',
        help='training checkpoint of the distiller (student and '
        'connectors); the teacher comes from model.teacher_ckpt')
    parser.add_argument('--img', required=True, help='input image file')
    parser.add_argument('--out', required=True, help='output PNG file')
    parser.add_argument(
        '--pair',
        help='name of the distill term (a key of model.distill); default: '
        'the first one')
    parser.add_argument(
        '--level',
        type=int,
        default=0,
        help='feature level for tuple features such as FPN outputs')
    parser.add_argument(
        '--topk',
        type=int,
        default=None,
        help='number of teacher channels (default: 4 maps, or 24 bars for '
        '1x1 / pooled features)')
    parser.add_argument(
        '--shared-scale',
        action='store_true',
        help='one colour scale per row for the teacher and the student '
        'maps the loss compares (default: every map its own scale)')
    parser.add_argument(
        '--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--dpi', type=int, default=100, help='figure dpi')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='random seed (initialisation of anything not loaded from a '
        'checkpoint)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'model.teacher_ckpt=None')
    args = parser.parse_args(argv)
    if args.topk is not None and args.topk < 1:
        parser.error('--topk must be >= 1')
    return args


# --------------------------------------------------------------------------
# model and data
# --------------------------------------------------------------------------
def build_distiller(cfg: Config,
                    checkpoint: Optional[str] = None,
                    device: str = 'cpu') -> torch.nn.Module:
    """Build the config's ``FeatureDistiller`` as the Runner would.

    Args:
        cfg (Config): A distillation config (``model.type`` is
            ``mmkd_channel.FeatureDistiller``).
        checkpoint (str, optional): Training checkpoint to load into the
            distiller (student and connectors; the teacher is not in it).
        device (str): Device to put the model on.

    Returns:
        nn.Module: The distiller, in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = cfg.model.copy()
    # mmpretrain keeps data_preprocessor at the top level; the Runner merges
    # it into the model dict, so do the same.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    if not hasattr(model, 'distill_pairs'):
        raise TypeError(
            f'{type(model).__name__} is not a FeatureDistiller: the config '
            'must distill (model.type=mmkd_channel.FeatureDistiller).')
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False)
    return model.to(device).eval()


def find_pipeline(cfg: Config) -> list:
    """The test (else val) pipeline of a config, looking into wrappers."""
    for key in ('test_dataloader', 'val_dataloader'):
        ds = (cfg.get(key) or {}).get('dataset')
        while isinstance(ds, dict):
            if 'pipeline' in ds:
                return list(ds['pipeline'])
            ds = ds.get('dataset')
    raise KeyError('the config has no test_dataloader.dataset.pipeline (nor '
                   'a val one) to prepare the image with')


def load_batch(model: torch.nn.Module, cfg: Config, img_path: str) -> dict:
    """Run one image through the host's test pipeline and preprocessor.

    Annotation loading steps are dropped (there are no labels for an
    arbitrary image).

    Returns:
        dict: ``inputs`` (1, 3, H, W) and ``data_samples``, as the model's
        ``data_preprocessor`` returns them.
    """
    if not osp.isfile(img_path):
        raise FileNotFoundError(f'--img {img_path!r} is not a file')
    steps = [
        t for t in find_pipeline(cfg)
        if 'LoadAnnotations' not in str(t.get('type', ''))
    ]
    if not any('LoadImage' in str(t.get('type', '')) for t in steps):
        # array datasets (CIFAR) have no loading step: read the file
        steps.insert(0, dict(type='LoadImageFromFile'))
    data = Compose(steps)(dict(img_path=img_path, img_id=0))
    return model.data_preprocessor(pseudo_collate([data]), False)


def record_features(model: torch.nn.Module, batch: dict) -> Tuple[dict, dict]:
    """Recorded student and teacher features of one batch (no grad).

    The student runs in ``tensor`` mode with its recorder; the teacher through
    :meth:`FeatureDistiller.teacher_features`, exactly as in training.
    """
    inputs, samples = batch['inputs'], batch['data_samples']
    with torch.no_grad():
        with model.student_recorder.record() as s_out:
            model.student(inputs, samples, mode='tensor')
        t_out = model.teacher_features(
            inputs, samples, stop_after=s_out['__calls__'])
    return s_out, t_out


# --------------------------------------------------------------------------
# feature helpers
# --------------------------------------------------------------------------
def pick_level(feat: Any, level: int, what: str) -> Any:
    """``feat[level]`` for tuple features (FPN), ``feat`` otherwise."""
    if isinstance(feat, (tuple, list)):
        if not -len(feat) <= level < len(feat):
            raise IndexError(f'--level {level}: the {what} feature has '
                             f'{len(feat)} levels (0..{len(feat) - 1})')
        return feat[level]
    return feat


def is_map(feat: Any) -> bool:
    """Whether ``feat`` is an ``(N, C, H, W)`` tensor."""
    return isinstance(feat, Tensor) and feat.dim() == 4


def as_vector(feat: Any) -> Optional[Tensor]:
    """Per-channel values ``(C,)`` of a pooled ``(N, C)`` or 1x1 feature.

    Returns ``None`` for anything with a spatial extent.

    Examples:
        >>> import torch
        >>> as_vector(torch.ones(1, 3, 1, 1)).shape, as_vector(torch.ones(
        ...     1, 3, 2, 2))
        (torch.Size([3]), None)
    """
    if not isinstance(feat, Tensor):
        return None
    if feat.dim() == 2:
        return feat[0]
    if feat.dim() == 4 and feat.shape[-2] * feat.shape[-1] == 1:
        return feat[0, :, 0, 0]
    return None


def channel_energy(feat: Tensor) -> Tensor:
    """Mean activation energy ``mean(x_c ** 2)`` per channel of ``(C, H, W)``.

    Examples:
        >>> import torch
        >>> channel_energy(torch.tensor([[[1., -1.]], [[2., 0.]]]))
        tensor([1., 2.])
    """
    return feat.float().pow(2).flatten(1).mean(1)


def best_correlated(student: Tensor, teacher_map: Tensor) -> Tuple[int, float]:
    """Student channel most correlated (``|r|``) with one teacher map.

    Args:
        student (Tensor): Student feature ``(Cs, Hs, Ws)``; resized
            bilinearly to the teacher's spatial size when it differs.
        teacher_map (Tensor): One teacher channel ``(H, W)``.

    Returns:
        tuple: ``(channel index, Pearson r)``.

    Examples:
        >>> import torch
        >>> t = torch.arange(16.).view(4, 4)
        >>> s = torch.stack([torch.rand(4, 4), -2 * t, torch.rand(4, 4)])
        >>> best_correlated(s, t)[0], round(best_correlated(s, t)[1], 3)
        (1, -1.0)
    """
    s = student.double()
    if s.shape[-2:] != teacher_map.shape[-2:]:
        s = F.interpolate(
            s[None],
            size=teacher_map.shape[-2:],
            mode='bilinear',
            align_corners=False)[0]
    s = s.flatten(1)
    t = teacher_map.double().flatten()
    s = s - s.mean(1, keepdim=True)
    t = t - t.mean()
    # float64: r is scale-free, so even tiny untrained activations count;
    # constant maps (zero norm) get r = 0
    denom = s.norm(dim=1) * t.norm()
    r = torch.where(denom > 0, (s @ t) / denom.clamp_min(1e-300),
                    torch.zeros_like(denom))
    idx = int(r.abs().argmax())
    return idx, float(r[idx])


def spatial_softmax(fmap: Tensor, tau: float) -> Tensor:
    """CWD's per-channel distribution ``softmax(x / tau)`` over positions."""
    return F.softmax(fmap.float().flatten() / tau, dim=0).view(fmap.shape)


def describe(feat: Any) -> str:
    """Shape(s) of a feature as text."""
    if isinstance(feat, (tuple, list)):
        return '(' + ', '.join(describe(f) for f in feat) + ')'
    if isinstance(feat, Tensor):
        return 'x'.join(str(v) for v in feat.shape)
    return type(feat).__name__


# --------------------------------------------------------------------------
# the figure
# --------------------------------------------------------------------------
def channel_rows(pair: torch.nn.Module, s_feat: Any, t_feat: Any, level: int,
                 topk: int) -> Tuple[List[dict], dict]:
    """Compute every panel of the figure.

    Args:
        pair: The ``_Pair`` of the distill term (connectors and loss).
        s_feat, t_feat: The recorded student / teacher features (all
            levels, batch of one).
        level (int): Level to draw for tuple features.
        topk (int): Number of teacher channels.

    Returns:
        tuple: A list of rows (dicts of panels: ``title``, ``map``,
        ``scale`` group) and a dict of facts for the header.
    """
    with torch.no_grad():
        s_trans_all = pair._connect(pair.connector, s_feat)
        t_conn_all = pair._connect(pair.teacher_connector, t_feat)
    t_raw = pick_level(t_feat, level, 'teacher')
    s_raw = pick_level(s_feat, level, 'student')
    t_conn = pick_level(t_conn_all, level, 'teacher connector output')
    s_trans = pick_level(s_trans_all, level, 'connector output')
    if not is_map(t_raw) or not is_map(s_raw):
        raise ValueError(
            f"distill['{pair.name}'] records a student {describe(s_raw)} "
            f'and a teacher {describe(t_raw)} feature; this tool draws '
            'spatial (N, C, H, W) maps. Choose a pair on feature maps with '
            '--pair.')
    teacher_label = 'teacher'
    if pair.teacher_connector is not None and is_map(t_conn):
        teacher_label = (
            f'teacher after {type(pair.teacher_connector).__name__}')
        t_show = t_conn[0]
    else:
        t_show = t_raw[0]
    s_raw0 = s_raw[0]
    conn_name = connector_name(pair)
    loss = pair.loss
    cwd_tau = loss.tau if isinstance(loss, ChannelWiseDivergence) else None

    energy = channel_energy(t_show)
    k = min(topk, energy.numel())
    channels = energy.topk(k).indices.tolist()
    rows = []
    progress = ProgressBar(k)
    for c in channels:
        row = [
            dict(
                title=f'{teacher_label}\nch {c} (energy '
                f'{float(energy[c]):.3g})',
                map=t_show[c],
                scale='t')
        ]
        if pair.connector is None:
            # the loss sees the raw student: share the teacher's scale
            if s_raw0.shape[0] == t_show.shape[0]:
                row.append(
                    dict(
                        title=f'student (no connector)\nch {c}',
                        map=s_raw0[c],
                        scale='t'))
            else:
                j, r = best_correlated(s_raw0, t_show[c])
                row.append(
                    dict(
                        title=f'student ch {j} (no connector)\n(most '
                        f'correlated, r={r:.2f})',
                        map=s_raw0[j],
                        scale=None))
        elif s_raw0.shape[0] == t_show.shape[0]:
            row.append(
                dict(title=f'raw student\nch {c}', map=s_raw0[c], scale=None))
        else:
            j, r = best_correlated(s_raw0, t_show[c])
            row.append(
                dict(
                    title=f'raw student ch {j}\n(most correlated, r={r:.2f})',
                    map=s_raw0[j],
                    scale=None))
        if pair.connector is None:
            pass
        elif is_map(s_trans) and s_trans.shape[1] == t_show.shape[0]:
            row.append(
                dict(
                    title=f'{conn_name}(student)\nch {c}',
                    map=s_trans[0, c],
                    scale='t'))
        elif is_map(s_trans):
            j, r = best_correlated(s_trans[0], t_show[c])
            row.append(
                dict(
                    title=f'{conn_name}(student) ch {j}\n(most correlated, '
                    f'r={r:.2f})',
                    map=s_trans[0, j],
                    scale=None))
        else:
            row.append(
                dict(
                    title=f'{conn_name}(student)',
                    text=f'output {describe(s_trans)}\nis not a spatial map'))
        if cwd_tau is not None and is_map(s_trans) and (s_trans.shape[1:]
                                                        == t_show.shape):
            row.append(
                dict(
                    title=f'teacher softmax(x/{cwd_tau:g})\nch {c}',
                    map=spatial_softmax(t_show[c], cwd_tau),
                    scale='p'))
            row.append(
                dict(
                    title=f'student softmax(x/{cwd_tau:g})\nch {c}',
                    map=spatial_softmax(s_trans[0, c], cwd_tau),
                    scale='p'))
        rows.append(row)
        progress.update()
    sys.stdout.write('\n')
    facts = pair_facts(
        pair, t_feat, level, s_raw, t_raw, s_trans, channels=channels)
    return rows, facts


def pair_facts(pair: torch.nn.Module, t_feat: Any, level: int, s_raw: Any,
               t_raw: Any, s_trans: Any, **extra) -> dict:
    """The header facts of a drawn pair: its paths, shapes, connectors and
    loss, plus ``extra``."""
    return dict(
        name=pair.name,
        student_path=pair.student_path,
        teacher_path=pair.teacher_path,
        levels=len(t_feat) if isinstance(t_feat, (tuple, list)) else None,
        level=level,
        student_shape=describe(s_raw),
        teacher_shape=describe(t_raw),
        transformed_shape=describe(s_trans),
        connector=connector_name(pair),
        teacher_connector=(type(pair.teacher_connector).__name__
                           if pair.teacher_connector is not None else None),
        loss=type(pair.loss).__name__,
        **extra)


def connector_name(pair: torch.nn.Module) -> str:
    """The student connector's class name, ``'none'`` without one."""
    return (type(pair.connector).__name__
            if pair.connector is not None else 'none')


def channel_values(pair: torch.nn.Module, s_feat: Any, t_feat: Any,
                   level: int) -> Tuple[dict, dict]:
    """Per-channel values of 1x1 / pooled features, for :func:`draw_vectors`.

    Args:
        pair: The ``_Pair`` of the distill term (connectors and loss).
        s_feat, t_feat: The recorded student / teacher features (batch of
            one).
        level (int): Level to draw for tuple features.

    Returns:
        tuple: ``values`` (``teacher``, ``student`` and, with a connector,
        ``transformed``: ``(C,)`` tensors, ``None`` where absent) and the
        header facts. Raises ``ValueError`` if a feature has a spatial
        extent.
    """
    with torch.no_grad():
        s_trans_all = pair._connect(pair.connector, s_feat)
        t_conn_all = pair._connect(pair.teacher_connector, t_feat)
    t_raw = pick_level(t_feat, level, 'teacher')
    s_raw = pick_level(s_feat, level, 'student')
    t_show = t_raw
    teacher_label = 'teacher'
    if pair.teacher_connector is not None:
        t_show = pick_level(t_conn_all, level, 'teacher connector output')
        teacher_label = (
            f'teacher after {type(pair.teacher_connector).__name__}')
    s_trans = pick_level(s_trans_all, level, 'connector output')
    values = dict(
        teacher=as_vector(t_show),
        student=as_vector(s_raw),
        transformed=(as_vector(s_trans)
                     if pair.connector is not None else None))
    if values['teacher'] is None or values['student'] is None:
        raise ValueError(
            f"distill['{pair.name}']: student {describe(s_raw)}, teacher "
            f'{describe(t_show)}: not 1x1 or pooled features')
    facts = pair_facts(
        pair,
        t_feat,
        level,
        s_raw,
        t_raw,
        s_trans,
        teacher_label=teacher_label)
    return values, facts


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


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson's r of two vectors (0 when one is constant).

    Examples:
        >>> import torch
        >>> round(pearson(torch.tensor([1., 2., 3.]),
        ...               torch.tensor([2., 4., 7.])), 3)
        0.993
    """
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = float(x.norm() * y.norm())
    return float(x @ y) / denom if denom > 0 else 0.0


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
    ax = fig.add_subplot(top[0, 0])
    ax.imshow(image)
    ax.set_title('input image', fontsize=9)
    ax.axis('off')
    ax = fig.add_subplot(top[0, 1])
    ax.axis('off')
    lines = header_lines(facts, title, loss_value)
    lines.append(f'{t.numel()} channels without spatial extent: values '
                 'per channel')
    ax.text(
        0.0,
        1.0,
        '\n'.join(lines),
        va='top',
        ha='left',
        fontsize=9,
        family='monospace',
        transform=ax.transAxes)
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
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(image)
    ax.set_title('input image', fontsize=9)
    ax.axis('off')
    lines = header_lines(facts, title, loss_value)
    lines.append(f'top-{len(rows)} teacher channels by mean(t^2): '
                 f"{facts['channels']}")
    lines.append('colour scale: teacher and the student map the loss sees '
                 'share one per row' if shared_scale else
                 'colour scale: every map its own (range in its title)')
    ax = fig.add_subplot(grid[0, 1:])
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
        wrap=True)
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


def read_rgb(path: str) -> np.ndarray:
    """The image as an RGB array for the header."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Run the tool; returns the path of the written PNG."""
    args = parse_args(argv)
    logger = MMLogger.get_instance(LOGGER_NAME)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if not isinstance(cfg.get('model'), (dict, ConfigDict)):
        raise KeyError(f'{args.config} defines no model')
    set_random_seed(args.seed)
    model = build_distiller(cfg, args.checkpoint, args.device)
    pairs = model.distill_pairs
    name = args.pair if args.pair is not None else next(iter(pairs))
    if name not in pairs:
        raise KeyError(f'--pair {name!r}: the config distills '
                       f'{list(pairs)}')
    pair = pairs[name]
    batch = load_batch(model, cfg, args.img)
    batch['inputs'] = batch['inputs'].to(args.device)
    logger.info(f'input {tuple(batch["inputs"].shape)}; recording '
                f"'{pair.student_path}' (student) and "
                f"'{pair.teacher_path}' (teacher)")
    s_out, t_out = record_features(model, batch)
    s_feat, t_feat = s_out[pair.student_path], t_out[pair.teacher_path]
    vectors = (
        as_vector(pick_level(t_feat, args.level, 'teacher')) is not None
        and as_vector(pick_level(s_feat, args.level, 'student')) is not None)
    if vectors:
        values, facts = channel_values(pair, s_feat, t_feat, args.level)
    else:
        topk = args.topk or 4
        rows, facts = channel_rows(pair, s_feat, t_feat, args.level, topk)
    try:
        with torch.no_grad():
            loss_value = float(pair(s_feat, t_feat, batch['data_samples']))
    except Exception as e:  # e.g. a loss needing labels the image lacks
        logger.warning(f'loss not evaluated on this image: {e}')
        loss_value = None
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'--out: directory {out_dir} does not exist')
    if vectors:
        draw_vectors(
            values,
            facts,
            read_rgb(args.img),
            args.out,
            title=osp.basename(args.config),
            topk=args.topk or 24,
            dpi=args.dpi,
            loss_value=loss_value)
    else:
        draw(
            rows,
            facts,
            read_rgb(args.img),
            args.out,
            title=osp.basename(args.config),
            dpi=args.dpi,
            loss_value=loss_value,
            shared_scale=args.shared_scale)
    logger.info(f'wrote {args.out}')
    return args.out


if __name__ == '__main__':
    main()
