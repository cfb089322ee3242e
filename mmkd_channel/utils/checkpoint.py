"""Checkpoint loading that never unpickles arbitrary objects.

Every checkpoint (teacher weights, ``--resume``, ``load_from``) is read with
``torch.load(weights_only=True)``. On top of tensors and builtin containers
we allow exactly the globals MMEngine itself writes into a checkpoint
(its ``message_hub`` keeps ``HistoryBuffer`` objects holding numpy arrays);
any other global is refused with :class:`UnsafeCheckpointError`.

Importing :mod:`mmkd_channel` registers these loaders with MMEngine's
``CheckpointLoader`` for local paths and ``http(s)://`` URLs, which also
makes ``Runner(resume=True)`` work on torch >= 2.6.

It also makes MMEngine's checkpoint writes atomic (:func:`atomic_torch_save`):
a process killed while saving leaves the previous file untouched.
"""
import builtins
import os
import os.path as osp
import pickle
import re
import uuid
from typing import Any, List, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.logging import MMLogger
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled global outside the allowlist."""


def mmengine_safe_globals() -> List[Any]:
    """The globals MMEngine writes into training checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed: List[Any] = [HistoryBuffer, np.ndarray, np.dtype]
    # numpy pickles arrays via its (version-specific) reconstruct helpers.
    try:
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy >= 2 without the legacy alias
        from numpy._core.multiarray import _reconstruct, scalar
    allowed += [_reconstruct, scalar]
    # dtype classes (numpy >= 1.25 pickles dtypes as instances of these)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [
            getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
        ]
    return allowed


# torch words it 'Unsupported global: GLOBAL eval ...' (builtins without
# their module) or 'unsupported GLOBAL posix.system whose module ...'.
_UNSUPPORTED = re.compile(r'GLOBAL ([\w.]+)', re.IGNORECASE)


def _global_name(message: str) -> str:
    found = _UNSUPPORTED.search(message)
    if not found:
        return 'an object'
    name = found.group(1)
    if '.' not in name and hasattr(builtins, name):
        name = f'builtins.{name}'
    return name


def safe_torch_load(filename: str, map_location: Any = None) -> Any:
    """``torch.load(weights_only=True)`` plus MMEngine's allowlist.

    Raises:
        FileNotFoundError: if ``filename`` does not exist.
        UnsafeCheckpointError: if the file pickles a global outside the
            allowlist (nothing from the file is executed).
        RuntimeError: if the file is truncated or not a checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' not in str(e) and \
                not _UNSUPPORTED.search(str(e)):
            raise RuntimeError(  # a damaged pickle, not a refused one
                f'checkpoint {filename!r} cannot be read ({e}); it may be '
                'truncated or not a PyTorch checkpoint.') from None
        name = _global_name(str(e))
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {filename!r}: it pickles '
            f'{name}, which is not among the globals MMEngine writes '
            '(tensors, containers, HistoryBuffer, numpy arrays). Loading it '
            'could execute code. Re-save its state_dict with plain tensors '
            'from a trusted environment (a resume checkpoint written by '
            'MMEngine without mmkd_channel imported pickles '
            "builtins.getattr; re-save it with 'mmkd_channel' imported)."
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError,
            IndexError) as e:  # what torch raises for damaged files
        raise RuntimeError(
            f'checkpoint {filename!r} cannot be read ({e}); it may be '
            'truncated or not a PyTorch checkpoint.') from None


# MMEngine logs 'Loads checkpoint by <name[10:]> backend' with the loader's
# function name, hence the load_from_<backend> names.
def load_from_local(filename: str, map_location: Any = None) -> Any:
    return safe_torch_load(filename, map_location)


def load_from_http(filename: str,
                   map_location: Any = None,
                   model_dir: Optional[str] = None,
                   progress: bool = False) -> Any:
    """Download once (rank 0 first) into torch's hub cache, then load."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        tmp = cached + '.partial'
        torch.hub.download_url_to_file(filename, tmp, progress=progress)
        os.replace(tmp, cached)
    if world_size > 1:
        barrier()
    return safe_torch_load(cached, map_location)


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer`` state without its ``statistics_methods``.

    MMEngine pickles the buffer's statistics functions (``getattr(
    HistoryBuffer, 'mean')``), which no safe loader can accept: allowing
    ``getattr`` would allow arbitrary code. They are class-level and are
    restored by ``__setstate__`` anyway, so nothing is lost.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def atomic_torch_save(obj: Any, filename: str) -> None:
    """``torch.save`` that never leaves a partly written ``filename``.

    The object is written to a temporary file in the same directory, flushed
    and ``fsync``-ed, then renamed over ``filename`` with ``os.replace``
    (atomic on POSIX and Windows within one file system) and the directory
    entry is synced. A process killed at any point leaves either the old
    file or the new one, never a truncated one; at worst a stale
    ``.<name>.*.tmp`` file stays next to it.

    Args:
        obj: What to save (a checkpoint dict).
        filename (str): Local destination path.
    """
    filename = osp.abspath(osp.expanduser(filename))
    dirname = osp.dirname(filename)
    os.makedirs(dirname, exist_ok=True)
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
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
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


_ORIGINAL_SAVE_CHECKPOINT = getattr(mmengine_checkpoint.save_checkpoint,
                                    '_mmengine_original',
                                    mmengine_checkpoint.save_checkpoint)


def save_checkpoint(checkpoint: dict,
                    filename: str,
                    file_client_args: Optional[dict] = None,
                    backend_args: Optional[dict] = None) -> None:
    """MMEngine's ``save_checkpoint``, atomic for local files.

    Same signature as :func:`mmengine.runner.checkpoint.save_checkpoint`;
    remote backends (``s3://``, ``pavi://`` ...) and the deprecated
    ``file_client_args`` go to MMEngine's own function.
    """
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


def register_safe_loaders() -> None:
    """Route MMEngine's checkpoint I/O through this module.

    Loading goes through :func:`safe_torch_load`; the checkpoints MMEngine
    writes are made loadable that way (see :func:`_history_buffer_getstate`)
    and are written atomically (:func:`register_atomic_save`).
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_from_http, force=True)
    register_atomic_save()


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
        for k, v in checkpoint.items()
    }


def load_teacher_checkpoint(teacher: nn.Module, filename: str) -> None:
    """Load teacher weights; every parameter and buffer must be covered.

    Raises:
        FileNotFoundError: if a local ``filename`` does not exist.
        ValueError: if the keys do not fit the teacher (another
            architecture), naming missing and unexpected keys.
        UnsafeCheckpointError: if the file pickles a disallowed global.
        RuntimeError: if the file is truncated or not a checkpoint.
    """
    if not isinstance(filename, str) or not filename:
        raise TypeError(f'teacher_ckpt must be a path or URL, got '
                        f'{filename!r}')
    is_url = filename.startswith(('http://', 'https://'))
    if not is_url and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(
            f'teacher_ckpt {filename!r} does not exist. Give the path or URL '
            'of the teacher checkpoint, e.g. the model-zoo URL.')
    try:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f'teacher_ckpt: {e}') from None
    except RuntimeError as e:  # truncated / not a checkpoint
        raise RuntimeError(f'teacher_ckpt: {e}') from None
    try:
        state_dict = extract_state_dict(ckpt)
    except ValueError:
        raise ValueError(f'teacher_ckpt {filename!r} holds no state_dict') \
            from None
    own = teacher.state_dict()
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
