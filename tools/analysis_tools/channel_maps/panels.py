"""What the figure shows for a distilled pair: its panels and header facts.

:func:`channel_rows` picks the top-k teacher channels of a spatial feature
and, per channel, the teacher map, the raw student map (the same channel,
or the most correlated one when the channel counts differ), the
connector's output and, for CWD, both spatial softmaxes;
:func:`channel_values` gathers per-channel values of 1x1 / pooled
features. Both return plain tensors and text for :mod:`.drawing`.
"""
import sys
from typing import Any, List, Tuple

import torch
from mmengine.utils import ProgressBar

from mmkd_channel.models import ChannelWiseDivergence
from .features import (as_vector, best_correlated, channel_energy, describe,
                       is_map, pick_level, spatial_softmax)


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
