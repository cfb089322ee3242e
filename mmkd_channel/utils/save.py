"""Checkpoint writes that never destroy the previous checkpoint.

:func:`save_checkpoint` replaces MMEngine's (see :func:`register_atomic_save`):
a local checkpoint is written to a temporary file in the same directory and
renamed over the destination, so a process killed while saving, or a full
disk, leaves the previous file untouched; weights that are not finite are
never written.
"""
import errno
import glob
import os
import os.path as osp
import shutil
import uuid
from typing import Any, List, Optional

import torch
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint

#: temporary files of :func:`atomic_torch_save`: ``.<name>.<pid>.<hex>.tmp``
TMP_PATTERN = '.*.*.*.tmp'


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (the previous one is intact)."""


def _tensors(obj: Any) -> List[torch.Tensor]:
    """Every tensor nested in dicts, lists and tuples of ``obj``."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def estimate_bytes(obj: Any) -> int:
    """Bytes ``torch.save(obj)`` writes, roughly: storages plus 1 MB."""
    seen, total = set(), 1 << 20
    for t in _tensors(obj):
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # e.g. sparse
            total += t.numel() * t.element_size()
            continue
        key = storage.data_ptr(), storage.nbytes()
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def nonfinite_tensors(state_dict: Any) -> List[str]:
    """Keys of floating-point tensors of ``state_dict`` with NaN or inf."""
    if not isinstance(state_dict, dict):
        return []
    return [
        str(k) for k, v in state_dict.items() if isinstance(v, torch.Tensor)
        and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def _free_bytes(dirname: str) -> int:
    return shutil.disk_usage(dirname).free


def _full_disk_error(filename: str, needed: int, cause: str) -> \
        CheckpointSaveError:
    dirname = osp.dirname(filename)
    try:
        free = f'{_free_bytes(dirname):,} bytes are free'
    except OSError:
        free = 'the free space is unknown'
    return CheckpointSaveError(
        errno.ENOSPC,
        f'cannot save checkpoint {filename!r}: it needs about {needed:,} '
        f'bytes and {free} in {dirname!r} ({cause}). Nothing was replaced: '
        'the previous checkpoint there is intact. Free some space (old '
        "checkpoints: CheckpointHook's max_keep_ckpts) or choose another "
        'work_dir.')


def atomic_torch_save(obj: Any, filename: str) -> None:
    """``torch.save`` that never leaves a partly written ``filename``.

    The object is written to a temporary file in the same directory, flushed
    and ``fsync``-ed, then renamed over ``filename`` with ``os.replace``
    (atomic on POSIX and Windows within one file system) and the directory
    entry is synced. A process killed at any point leaves either the old
    file or the new one, never a truncated one; at worst a stale
    ``.<name>.*.tmp`` file stays next to it (:func:`remove_stale_tmp_files`
    removes those).

    Args:
        obj: What to save (a checkpoint dict).
        filename (str): Local destination path.

    Raises:
        CheckpointSaveError: if the disk is (or would get) full; the message
            gives the path and the bytes needed.
    """
    filename = osp.abspath(osp.expanduser(filename))
    dirname = osp.dirname(filename)
    os.makedirs(dirname, exist_ok=True)
    needed = estimate_bytes(obj)
    try:
        free = _free_bytes(dirname)
    except OSError:
        free = None
    if free is not None and free < needed:
        raise _full_disk_error(filename, needed, 'checked before writing')
    # open(..., 'xb') rather than mkstemp: the file gets the usual
    # permissions (umask), not mkstemp's 0600.
    tmp = osp.join(
        dirname, f'.{osp.basename(filename)}.{os.getpid()}.'
        f'{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, 'xb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        # torch reports a failed write as a RuntimeError of its zip writer
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG,
                                                  errno.EDQUOT):
            raise _full_disk_error(filename, needed, str(e)) from e
        if isinstance(e, RuntimeError) and ('inline_container' in str(e)
                                            or 'file write failed' in str(e)):
            raise _full_disk_error(filename, needed,
                                   f'the write failed: {e}') from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_tmp_files(dirname: str) -> List[str]:
    """Delete the temporary files interrupted saves left in ``dirname``.

    Call it when a run starts, before anything saves into ``dirname``.

    Returns:
        list[str]: The removed paths (also logged).
    """
    removed = []
    for path in sorted(glob.glob(osp.join(dirname, TMP_PATTERN))):
        try:
            size = osp.getsize(path)
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
        print_log(
            f'removed {path!r} ({size:,} bytes), a partial checkpoint left '
            'by an interrupted save.',
            logger='current',
            level=30)
    return removed


_ORIGINAL_SAVE_CHECKPOINT = getattr(mmengine_checkpoint.save_checkpoint,
                                    '_mmengine_original',
                                    mmengine_checkpoint.save_checkpoint)


def save_checkpoint(checkpoint: dict,
                    filename: str,
                    file_client_args: Optional[dict] = None,
                    backend_args: Optional[dict] = None) -> None:
    """MMEngine's ``save_checkpoint``: atomic for local files, and refusing
    weights that are not finite.

    Same signature as :func:`mmengine.runner.checkpoint.save_checkpoint`;
    remote backends (``s3://``, ``pavi://`` ...) and the deprecated
    ``file_client_args`` go to MMEngine's own function.

    Raises:
        FloatingPointError: if ``checkpoint['state_dict']`` holds NaN or inf
            (nothing is written; the previous checkpoint stays).
    """
    bad = nonfinite_tensors(
        checkpoint.get('state_dict') if isinstance(checkpoint, dict) else {})
    if bad:
        raise FloatingPointError(
            f'refusing to save checkpoint {filename!r}: {len(bad)} weight '
            f'tensor(s) are not finite (NaN/inf), e.g. {bad[:5]}. Nothing '
            'was written, so every checkpoint on disk keeps finite weights. '
            'A step with non-finite gradients updated the model: add '
            "custom_hooks=[dict(type='mmkd_channel.DistillNaNHook')] (tools/"
            'train.py adds it), which stops or skips such steps before the '
            'optimizer updates, and lower the learning rate or loss weights.')
    local = False
    if file_client_args is None and not filename.startswith('pavi://'):
        try:
            local = isinstance(
                get_file_backend(filename, backend_args=backend_args),
                LocalBackend)
        except Exception:  # unknown prefix: let MMEngine report it
            local = False
    if not local:
        _ORIGINAL_SAVE_CHECKPOINT(checkpoint, filename, file_client_args,
                                  backend_args)
        return
    atomic_torch_save(checkpoint, filename)


save_checkpoint._mmengine_original = _ORIGINAL_SAVE_CHECKPOINT


def register_atomic_save() -> None:
    """Make MMEngine write checkpoints with :func:`save_checkpoint`.

    Replaces ``save_checkpoint`` in ``mmengine.runner.checkpoint`` (used by
    the training strategies and ``CheckpointHook``), in
    ``mmengine.runner.runner`` (``Runner.save_checkpoint`` imported it by
    name) and in ``mmengine.runner``. Nothing else in MMEngine changes.
    """
    import mmengine.runner as mmengine_runner
    from mmengine.runner import runner as runner_module
    for module in (mmengine_checkpoint, runner_module, mmengine_runner):
        module.save_checkpoint = save_checkpoint
