"""Keep a host's loss names clear of the names MMEngine reserves.

MMEngine's ``BaseModel.parse_losses`` sums every term whose key contains
``'loss'`` and logs that sum under the key ``'loss'``. A host model that
itself returns a key named ``loss`` (mmpretrain's classification heads do)
overwrites the logged total with its own term: the gradient still uses the
right sum, but the log, ``scalars.json`` and TensorBoard show the
cross-entropy as "loss". The distiller renames such a key before
``parse_losses`` sees it, so the logged ``loss`` is the back-propagated
total and every term is logged under its own name.
"""
from typing import Dict

#: Keys MMEngine writes itself into the log of a training step.
RESERVED_LOSS_KEYS = ('loss', )
#: The name a reserved host key gets: the first one not already taken.
RENAMED_LOSS_KEYS = ('loss_cls', 'loss_task')


def rename_reserved_losses(losses: Dict[str, object]) -> Dict[str, object]:
    """Rename host loss terms whose key MMEngine reserves for the total.

    ``loss`` becomes ``loss_cls`` (mmpretrain's heads compute a
    classification loss under that key); if ``loss_cls`` is taken,
    ``loss_task``, then ``loss_task_1``, ``loss_task_2``... The order of the
    terms is kept; values are not touched, so the total is unchanged.

    Args:
        losses (dict): The host model's ``mode='loss'`` output.

    Returns:
        dict: ``losses`` itself when no key is reserved, else a new dict.

    Examples:
        >>> rename_reserved_losses({'loss': 1.0})
        {'loss_cls': 1.0}
        >>> rename_reserved_losses({'loss': 1.0, 'loss_cls': 2.0})
        {'loss_task': 1.0, 'loss_cls': 2.0}
    """
    if not any(key in losses for key in RESERVED_LOSS_KEYS):
        return losses
    taken = set(losses)
    renamed = {}
    for key, value in losses.items():
        if key in RESERVED_LOSS_KEYS:
            new_key = _free_name(taken)
            taken.add(new_key)
            key = new_key
        renamed[key] = value
    return type(losses)(renamed)


def _free_name(taken: set) -> str:
    for name in RENAMED_LOSS_KEYS:
        if name not in taken:
            return name
    i = 1
    while f'{RENAMED_LOSS_KEYS[-1]}_{i}' in taken:
        i += 1
    return f'{RENAMED_LOSS_KEYS[-1]}_{i}'
