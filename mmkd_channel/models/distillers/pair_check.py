"""Build-time check of distilled pairs: every problem, with its fix.

The distiller runs both models once on a dummy input when it is built;
these helpers turn what it recorded into channel counts for the
connectors left ``'auto'`` and into one error that lists every pair (and
side) that does not fit.
"""
from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

from ..losses.base import as_tensor_list


class DistillCheckError(KeyError, ValueError, RuntimeError):
    """Raised once, when the distiller is built, listing every problem.

    It is a ``KeyError`` (module paths), a ``ValueError`` (shapes) and a
    ``RuntimeError`` (the forward pass), so code that caught the single
    error of earlier versions keeps working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


def shapes(feat) -> list:
    """Shapes of a feature (a list: one per level)."""
    return [tuple(f.shape) for f in as_tensor_list(feat)]


def connectors_of(conn) -> list:
    """The connector modules of a pair side (a module, a list or None)."""
    if conn is None:
        return []
    return list(conn) if isinstance(conn, nn.ModuleList) else [conn]


def non_tensor(feat) -> Optional[str]:
    """The type of a recorded output that is neither a tensor nor a tuple /
    list of tensors (a Hugging Face model's dict of outputs), else None."""
    if isinstance(feat, Tensor):
        return None
    if isinstance(feat, (tuple, list)):
        return next(filter(None, map(non_tensor, feat)), None)
    return type(feat).__name__


def unwrap_single(student, teacher):
    """Unwrap a one-element tuple that sits next to a tensor.

    mmpretrain backbones return a tuple of their ``out_indices`` (one
    stage by default), other modules a tensor: the pair compares the
    tensors.
    """
    if isinstance(teacher, Tensor) and isinstance(
            student, (tuple, list)) and len(student) == 1:
        student = student[0]
    if isinstance(student, Tensor) and isinstance(
            teacher, (tuple, list)) and len(teacher) == 1:
        teacher = teacher[0]
    return student, teacher


def is_pooled(feat) -> bool:
    """A ``(N, C)`` feature (or every level one)."""
    feats = as_tensor_list(feat)
    return bool(feats) and all(f.dim() == 2 for f in feats)


def is_spatial(feat) -> bool:
    feats = as_tensor_list(feat)
    return bool(feats) and all(f.dim() == 4 for f in feats)


def _spatial(output) -> bool:
    """A single ``(N, C, H, W)`` map with ``H * W > 1`` (not a tuple of
    levels, which a backbone or neck returns)."""
    return (isinstance(output, Tensor) and output.dim() == 4
            and output.shape[2] * output.shape[3] > 1)


def last_spatial_module(model: nn.Module, path: str,
                        run: Callable[[], None]) -> Optional[str]:
    """The last module that returned a spatial map before ``path`` did.

    Hooks every module of ``model``, calls ``run()`` (a forward pass) and
    looks, in the order the modules returned, for the last one before
    ``path`` returned whose output is an ``(N, C, H, W)`` tensor with
    ``H * W > 1``: the last spatial feature before the pooling.
    """
    order: List[tuple] = []
    end: List[int] = []

    def hook(name):

        def fn(module, args, output):
            if not end:
                order.append((name, _spatial(output)))
                if name == path:
                    end.append(len(order) - 1)

        return fn

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n
    ]
    try:
        with torch.no_grad():
            run()
    except Exception:  # the models ran before; this is a best effort
        pass
    finally:
        for h in handles:
            h.remove()
    if not end:
        return None
    for name, spatial in reversed(order[:end[0]]):
        if spatial:
            return name
    return None
