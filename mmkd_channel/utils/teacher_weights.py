"""Find the teacher's weights in a checkpoint that holds more than them.

A teacher is often the result of an earlier run: a distillation run of
this project (``student.`` / ``teacher.`` keys), of MMRazor
(``architecture.`` / ``distiller.`` keys), a DDP or wrapper checkpoint
(``module.``, ``model.``). The teacher's weights are the keys under the one
prefix that covers every parameter and buffer of the teacher with the
right shapes; when several models fit (a self-distillation checkpoint),
the trained model of a distillation run (its student) is taken.

:func:`load_teacher_checkpoint` reads ``teacher_ckpt`` through MMEngine's
``CheckpointLoader`` (so through the restricted reader) and checks, before
loading, that those weights cover the teacher, are finite and have the
teacher's shapes, naming what does not fit.
"""
import os.path as osp
from typing import Any, Dict, List, Optional

import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from .loaders import CheckpointDownloadError
from .restricted_pickle import Inert
from .safe_load import NotACheckpointError, UnsafeCheckpointError

#: Preferred prefixes when several fit: the model a distillation run trained.
TRAINED_MODEL_PREFIXES = ('student.', 'architecture.')


def tensor_items(state_dict: dict) -> Dict[str, torch.Tensor]:
    """The tensor entries of ``state_dict`` (EMA step counters and other
    plain values are not weights)."""
    return {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def _fits(own: dict, weights: dict, prefix: str) -> bool:
    """Every key of ``own`` is in ``weights`` under ``prefix``, same shape."""
    return all(
        prefix + k in weights and tuple(weights[prefix +
                                                k].shape) == tuple(v.shape)
        for k, v in own.items())


def fitting_prefixes(own: dict, weights: dict) -> List[str]:
    """Every key prefix under which ``weights`` hold all of ``own``."""
    if not own:
        return []
    first = next(iter(own))
    candidates = {
        key[:-len(first)]
        for key in weights if key.endswith('.' + first) or key == first
    }
    return sorted(p for p in candidates if _fits(own, weights, p))


def choose_prefix(own: dict, weights: dict) -> Optional[tuple]:
    """``(prefix, all fitting prefixes)`` of the teacher's weights, or
    None if none fits; ``''`` when the keys are the teacher's own."""
    found = fitting_prefixes(own, weights)
    if not found:
        return None
    if '' in found:
        return '', found
    for preferred in TRAINED_MODEL_PREFIXES:
        for prefix in found:
            if prefix.endswith(preferred) or prefix == preferred:
                return prefix, found
    return found[0], found


def non_finite(weights: dict) -> List[str]:
    """Keys of floating-point tensors holding NaN or Inf."""
    bad = []
    for k, v in weights.items():
        if v.is_floating_point() and v.numel() and not bool(
                torch.isfinite(v).all()):
            bad.append(k)
    return bad


def describe_values(state_dict: dict, n: int = 3) -> str:
    """``'key': type`` of the first ``n`` entries, for error messages."""
    items = list(state_dict.items())[:n]
    shown = ', '.join(f'{k!r}: {type(v).__name__}' for k, v in items)
    return '{' + shown + (', ...' if len(state_dict) > n else '') + '}'


def extract_state_dict(checkpoint: Any) -> dict:
    """The model weights of a checkpoint, with DDP ``module.`` removed."""
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        checkpoint = checkpoint['state_dict']
    elif isinstance(checkpoint, dict) and 'model' in checkpoint and \
            isinstance(checkpoint['model'], dict):
        checkpoint = checkpoint['model']
    if not isinstance(checkpoint, dict):
        raise ValueError('checkpoint holds no state_dict')
    return {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in checkpoint.items() if not isinstance(v, Inert)
    }


def load_teacher_checkpoint(teacher: nn.Module, filename: str) -> None:
    """Load teacher weights; every parameter and buffer must be covered.

    Raises:
        FileNotFoundError: if a local ``filename`` does not exist.
        CheckpointDownloadError: if the URL cannot be fetched.
        NotACheckpointError: if the file is truncated or not a checkpoint.
        ValueError: if the keys do not fit the teacher (another
            architecture), naming missing and unexpected keys.
    """
    if not isinstance(filename, str) or not filename:
        raise TypeError(f'teacher_ckpt must be a path or URL, got '
                        f'{filename!r}')
    is_url = filename.startswith(('http://', 'https://'))
    if not is_url and osp.isdir(osp.expanduser(filename)):
        last = osp.join(osp.expanduser(filename), 'last_checkpoint')
        named = ''
        if osp.isfile(last):
            with open(last) as f:
                named = f' (its last_checkpoint names {f.read().strip()!r})'
        raise IsADirectoryError(
            f'teacher_ckpt {filename!r} is a directory{named}. Give the '
            'checkpoint file itself, e.g. <work_dir>/epoch_12.pth.')
    if not is_url and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(
            f'teacher_ckpt {filename!r} does not exist. Give the path or URL '
            'of the teacher checkpoint, e.g. the model-zoo URL.')
    try:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    except (UnsafeCheckpointError, NotACheckpointError,
            CheckpointDownloadError) as e:
        raise type(e)(f'teacher_ckpt: {e}') from None
    try:
        found = extract_state_dict(ckpt)
    except ValueError:
        raise ValueError(f'teacher_ckpt {filename!r} holds no state_dict') \
            from None
    state_dict = tensor_items(found)
    if not state_dict:
        raise ValueError(
            f'teacher_ckpt {filename!r} holds no tensors where the weights '
            f'belong (state_dict {describe_values(found)}); give a '
            'checkpoint of the teacher model.')
    own = teacher.state_dict()
    chosen = choose_prefix(own, state_dict)
    if chosen is not None and chosen[0]:
        prefix, fitting = chosen
        state_dict = {
            k[len(prefix):]: v
            for k, v in state_dict.items() if k.startswith(prefix)
        }
        log = MMLogger.get_current_instance()
        (log.warning if len(fitting) > 1 else log.info)(
            f'teacher_ckpt: the teacher\'s weights are the keys under '
            f'{prefix!r} (models in the checkpoint that fit the teacher: '
            f'{fitting}; a distillation run\'s trained student is taken '
            'first).')
    bad = non_finite({k: v for k, v in state_dict.items() if k in own})
    if bad:
        raise ValueError(
            f'teacher_ckpt {filename!r}: {len(bad)} of the teacher\'s '
            f'tensors hold NaN or Inf (e.g. {bad[:3]}): the run that wrote '
            'it diverged. Give an earlier checkpoint of that run.')
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        k for k in own if k in state_dict
        and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or wrong_shape:
        raise ValueError(
            f'teacher_ckpt {filename!r} does not fit the teacher '
            f'{type(teacher).__name__}: {len(missing)} missing keys '
            f'{missing[:5]}, {len(unexpected)} unexpected keys '
            f'{unexpected[:5]}, {len(wrong_shape)} keys with other shapes '
            f'{wrong_shape[:5]}. Is it the checkpoint of another '
            'architecture than the `teacher` config?')
    teacher.load_state_dict(state_dict, strict=False)
    if unexpected:
        MMLogger.get_current_instance().warning(
            f'teacher_ckpt: ignored {len(unexpected)} keys the teacher does '
            f'not have: {unexpected[:5]}')


__all__ = [
    'tensor_items', 'fitting_prefixes', 'choose_prefix', 'non_finite',
    'describe_values', 'extract_state_dict', 'load_teacher_checkpoint'
]
