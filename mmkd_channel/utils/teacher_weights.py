"""Find the teacher's weights in a checkpoint that holds more than them.

A teacher is often the result of an earlier run: a distillation run of
this project (``student.`` / ``teacher.`` keys), of MMRazor
(``architecture.`` / ``distiller.`` keys), a DDP or wrapper checkpoint
(``module.``, ``model.``). The teacher's weights are the keys under the one
prefix that covers every parameter and buffer of the teacher with the
right shapes; when several models fit (a self-distillation checkpoint),
the trained model of a distillation run (its student) is taken.
"""
from typing import Dict, List, Optional

import torch

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


__all__ = [
    'tensor_items', 'fitting_prefixes', 'choose_prefix', 'non_finite',
    'describe_values'
]
