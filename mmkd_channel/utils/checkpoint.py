"""Checkpoint loading that executes nothing from the file.

Two readers, both registered with MMEngine's ``CheckpointLoader`` for local
paths and ``http(s)://`` URLs when :mod:`mmkd_channel` is imported:

* weights (``teacher_ckpt``, ``load_from``, ``init_cfg=Pretrained``,
  ``tools/test.py``, export): :func:`restricted_torch_load` rebuilds
  tensors, containers and an allowlist, and replaces every other pickled
  global by an inert placeholder (see :mod:`.restricted_pickle`). Any
  checkpoint's weights load, including those written by a host's own
  ``tools/train.py``, and nothing in the file runs.
* resume (``Runner.resume``, ``--resume``): :func:`safe_torch_load`,
  ``torch.load(weights_only=True)`` plus the globals MMEngine writes; any
  other global is refused with :class:`UnsafeCheckpointError`, whose
  message names ``tools/model_converters/resave_checkpoint.py``.

Config text stored in a checkpoint (``meta['config']``, ``meta['cfg']``,
``message_hub['runtime_info']['cfg']``) is Python source that MMEngine
would execute (``Runner.resume``, the inferencers); every checkpoint read
through ``CheckpointLoader`` arrives without it (:func:`drop_config_text`).
"""
import builtins
import contextvars
import os
import os.path as osp
import pickle
import re
import uuid
import zipfile
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from . import restricted_pickle
from .restricted_pickle import Inert, collect_replaced
from .save import (_ORIGINAL_SAVE_CHECKPOINT, atomic_torch_save,
                   register_atomic_save, save_checkpoint)
from .teacher_weights import (choose_prefix, describe_values, non_finite,
                              tensor_items)

__all__ = [
    'UnsafeCheckpointError',
    'NotACheckpointError',
    'CheckpointDownloadError',
    'safe_torch_load',
    'restricted_torch_load',
    'check_checkpoint_file',
    'drop_config_text',
    'strip_inert',
    'contains_inert',
    'resuming',
    'register_safe_loaders',
    'extract_state_dict',
    'load_teacher_checkpoint',
    # written by .save, kept importable from here
    '_ORIGINAL_SAVE_CHECKPOINT',
    'atomic_torch_save',
    'register_atomic_save',
    'save_checkpoint'
]

#: the project's one-line fix for a checkpoint --resume refuses
RESAVE_COMMAND = ('python tools/model_converters/resave_checkpoint.py '
                  '{src} {dst}')
#: config text MMEngine would execute, where it keeps it
CONFIG_TEXT_KEYS = ('config', 'cfg')
#: what plain MMEngine pickles for its HistoryBuffer statistics
HOST_GLOBALS = {'builtins.getattr'}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled global outside the allowlist."""


class NotACheckpointError(RuntimeError):
    """A file is empty, truncated or not a PyTorch checkpoint at all."""


class CheckpointDownloadError(OSError):
    """A checkpoint URL could not be fetched."""


def mmengine_safe_globals() -> List[Any]:
    """The globals MMEngine writes into training checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # (object, name) pairs: numpy 1 and 2 name the same helpers differently
    numpy_globals = restricted_pickle._numpy_globals()
    return [HistoryBuffer] + [(v, k) for k, v in numpy_globals.items()]


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


def check_checkpoint_file(filename: str) -> None:
    """Reject, without unpickling, files that cannot be a checkpoint.

    Raises:
        FileNotFoundError: if ``filename`` does not exist.
        NotACheckpointError: if it is empty, a truncated zip archive, a
            TorchScript archive (code) or neither a zip nor a pickle (an
            HTML error page saved as ``.pth``, a text file ...).
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    if filename.endswith('.safetensors'):
        return  # torch.load hands these to safetensors: tensors only
    size = osp.getsize(filename)
    if size == 0:
        raise NotACheckpointError(
            f'{filename!r} is empty (0 bytes): not a PyTorch checkpoint. An '
            'interrupted download or copy? Fetch the file again.')
    with open(filename, 'rb') as f:
        head = f.read(64)
    if head.startswith(b'PK'):
        if not zipfile.is_zipfile(filename):
            raise NotACheckpointError(
                f'{filename!r} ({size:,} bytes) is a truncated zip archive: '
                'not a complete PyTorch checkpoint (an interrupted download, '
                'copy or save). Fetch or copy it again.')
        with zipfile.ZipFile(filename) as z:
            names = z.namelist()
        if any(n.endswith('/constants.pkl') for n in names):
            raise NotACheckpointError(
                f'{filename!r} is a TorchScript archive (compiled code), not '
                'a PyTorch checkpoint of weights; it is not loaded.')
        if not any(n.endswith('data.pkl') for n in names):
            raise NotACheckpointError(
                f'{filename!r} is a zip archive without data.pkl: not a '
                'PyTorch checkpoint.')
        return
    if head[:1] == b'\x80' or osp.getsize(filename) > 262 and _is_tar(
            filename):
        return  # legacy torch format (a pickle) or the older tar format
    shown = head[:32]
    hint = ' (an HTML page: a login or error page saved instead of the ' \
        'file?)' if head.lstrip()[:1] == b'<' else ''
    raise NotACheckpointError(
        f'{filename!r} ({size:,} bytes) is not a PyTorch checkpoint: it '
        f'starts with {shown!r}{hint}. Check the path or URL.')


def _is_tar(filename: str) -> bool:
    with open(filename, 'rb') as f:
        f.seek(257)
        return f.read(5) == b'ustar'


def _damaged(filename: str, error: BaseException) -> NotACheckpointError:
    return NotACheckpointError(
        f'checkpoint {filename!r} cannot be read ({type(error).__name__}: '
        f'{error}); it is truncated or not a PyTorch checkpoint.')


def resave_command(filename: str) -> str:
    """The command that makes ``filename`` resumable."""
    dst = osp.splitext(filename)[0] + '_safe.pth'
    return RESAVE_COMMAND.format(src=filename, dst=dst)


def safe_torch_load(filename: str, map_location: Any = None) -> Any:
    """``torch.load(weights_only=True)`` plus MMEngine's allowlist.

    The strict reader: what ``--resume`` uses, since it restores optimizer,
    scheduler and message-hub objects, not only tensors.

    Raises:
        FileNotFoundError: if ``filename`` does not exist.
        NotACheckpointError: if the file is empty, truncated or not a
            checkpoint.
        UnsafeCheckpointError: if the file pickles a global outside the
            allowlist (nothing from the file is executed).
    """
    filename = osp.expanduser(filename)
    check_checkpoint_file(filename)
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not _UNSUPPORTED.search(str(e)):
            raise _damaged(filename, e) from None
        name = _global_name(str(e))
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {filename!r}: it pickles {name}, '
            'which is not among the globals MMEngine writes (tensors, '
            'containers, HistoryBuffer, numpy arrays); loading it with '
            'pickle could execute code. Resuming needs the whole training '
            'state, so this reader accepts nothing else. Its weights load '
            'as they are (teacher_ckpt, load_from). To resume from it, '
            're-save it safely (nothing in it runs) and resume from the '
            'copy: ' + resave_command(filename)) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError,
            AttributeError, TypeError) as e:
        raise _damaged(filename, e) from None


def restricted_torch_load(filename: str, map_location: Any = None) -> Any:
    """Read any checkpoint; pickled code becomes inert placeholders.

    Tensors, containers, ``HistoryBuffer`` and numpy objects come back as
    usual; every other global is an :class:`~.restricted_pickle.Inert`
    (never imported, never called). The replaced names are logged.

    Raises:
        FileNotFoundError: if ``filename`` does not exist.
        NotACheckpointError: if it is empty, truncated or not a checkpoint.
    """
    filename = osp.expanduser(filename)
    check_checkpoint_file(filename)
    with collect_replaced() as replaced:
        try:
            ckpt = torch.load(
                filename,
                map_location=map_location,
                weights_only=False,
                pickle_module=restricted_pickle)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError,
                KeyError, ValueError, IndexError, AttributeError,
                TypeError) as e:
            raise _damaged(filename, e) from None
    _report_replaced(filename, replaced)
    return ckpt


def _report_replaced(filename: str, replaced: set) -> None:
    if not replaced:
        return
    names = ', '.join(sorted(replaced))
    if replaced <= HOST_GLOBALS:
        print_log(
            f'{filename!r}: ignored {names} (MMEngine pickles its '
            'HistoryBuffer statistics that way); weights load as usual.',
            logger='current')
        return
    print_log(
        f'{filename!r} pickles {names}: replaced by inert placeholders '
        '(never imported, never called); only its tensors are used.',
        logger='current',
        level=30)


def contains_inert(obj: Any) -> bool:
    """Whether a placeholder is nested in dicts / lists / tuples of obj."""
    if isinstance(obj, Inert):
        return True
    if isinstance(obj, dict):
        return any(contains_inert(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(contains_inert(v) for v in obj)
    return False


def strip_inert(obj: Any) -> Any:
    """``obj`` without placeholders: dropped from dicts, None elsewhere."""
    if isinstance(obj, Inert):
        return None
    if isinstance(obj, dict):
        try:
            out = type(obj)()
        except TypeError:
            out = {}
        for k, v in obj.items():
            if not isinstance(v, Inert) and not isinstance(k, Inert):
                out[k] = strip_inert(v)
        return out
    if isinstance(obj, list):
        return [strip_inert(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, '_fields'):
        return type(obj)(strip_inert(v) for v in obj)
    return obj


def drop_config_text(ckpt: Any) -> List[str]:
    """Remove config source text from a loaded checkpoint, in place.

    Returns:
        list[str]: Where text was found (``'meta.cfg'`` ...).
    """
    dropped = []
    if not isinstance(ckpt, dict):
        return dropped
    meta = ckpt.get('meta')
    if isinstance(meta, dict):
        for key in CONFIG_TEXT_KEYS:
            if key in meta:
                del meta[key]
                dropped.append(f'meta.{key}')
    hub = ckpt.get('message_hub')
    info = hub.get('runtime_info') if isinstance(hub, dict) else None
    if isinstance(info, dict) and 'cfg' in info:
        del info['cfg']
        dropped.append('message_hub.runtime_info.cfg')
    return dropped


# Set while Runner.resume runs (see .resume): the strict reader is used.
_RESUMING: contextvars.ContextVar = contextvars.ContextVar(
    'mmkd_resuming', default=False)


@contextmanager
def resuming() -> Iterator[None]:
    """Read checkpoints with :func:`safe_torch_load` inside the block."""
    token = _RESUMING.set(True)
    try:
        yield
    finally:
        _RESUMING.reset(token)


def _read(filename: str, map_location: Any) -> Any:
    if _RESUMING.get():
        return safe_torch_load(filename, map_location)
    return restricted_torch_load(filename, map_location)


# MMEngine logs 'Loads checkpoint by <name[10:]> backend' with the loader's
# function name, hence the load_from_<backend> names.
def load_from_local(filename: str, map_location: Any = None) -> Any:
    return _read(filename, map_location)


def _local_rank() -> int:
    from mmengine.dist import get_rank
    return int(os.environ.get('LOCAL_RANK', get_rank()))


def _download(url: str, cached: str, progress: bool) -> None:
    tmp = f'{cached}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial'
    try:
        torch.hub.download_url_to_file(url, tmp, progress=progress)
        os.replace(tmp, cached)  # other nodes sharing the cache see it whole
    except HTTPError as e:
        raise CheckpointDownloadError(
            f'cannot download checkpoint {url}: HTTP {e.code} {e.reason}. '
            'Check the URL, or download the file yourself and give its '
            'local path.') from None
    except URLError as e:
        raise CheckpointDownloadError(
            f'cannot download checkpoint {url}: the server is unreachable '
            f'({e.reason}). Check the URL and the network, or download the '
            'file yourself and give its local path.') from None
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def load_from_http(filename: str,
                   map_location: Any = None,
                   model_dir: Optional[str] = None,
                   progress: bool = False) -> Any:
    """Download on each node's local rank 0, the others wait, all read.

    Every node has its own torch hub cache (``$TORCH_HOME``) in general, so
    the first process of each node downloads (``LOCAL_RANK`` 0), as
    MMEngine's ``load_from_http`` intends. The outcome is exchanged with an
    all-gather: when a download fails, the other processes say which rank
    failed instead of timing out in a barrier.
    """
    from mmengine.dist import all_gather, get_dist_info
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    rank, world_size = get_dist_info()
    error: Optional[Exception] = None
    first_on_node = _local_rank() == 0 or world_size == 1
    if first_on_node and not osp.isfile(cached):
        try:
            _download(filename, cached, progress)
        except CheckpointDownloadError as e:
            error = e
    if world_size > 1:
        flags = all_gather(torch.tensor([float(error is not None)]))
        failed = [r for r, f in enumerate(flags) if f.item() > 0]
        if failed and error is None:
            raise CheckpointDownloadError(
                f'cannot load checkpoint {filename}: rank(s) {failed} failed '
                'to fetch it (the first process of each node downloads; see '
                f'the log of rank {failed[0]} for why).')
    if error is not None:
        raise error
    try:
        return _read(cached, map_location)
    except NotACheckpointError as e:
        raise NotACheckpointError(
            f'{e} It is the cached download of {filename}; delete it to '
            'download again.') from None


def _without_config_text(loader):
    """Wrap a ``CheckpointLoader`` scheme so no config text comes back."""
    if getattr(loader, '_mmkd_no_config_text', False):
        return loader

    def load(*args, **kwargs):
        ckpt = loader(*args, **kwargs)
        drop_config_text(ckpt)
        return ckpt

    load._mmkd_no_config_text = True
    load.__name__ = getattr(loader, '__name__', 'load')
    return load


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


def register_safe_loaders() -> None:
    """Route MMEngine's checkpoint I/O through this module.

    Local files and URLs are read by :func:`restricted_torch_load` (or
    :func:`safe_torch_load` while resuming); every scheme, MMEngine's own
    included, returns checkpoints without config text; MMEngine writes
    checkpoints loadable by the strict reader and atomically
    (:func:`register_atomic_save`); ``Runner.resume`` and
    ``Runner.load_checkpoint`` get the checks of :mod:`.resume`.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    from .resume import patch_runner
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_from_http, force=True)
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        CheckpointLoader._schemes[prefix] = _without_config_text(loader)
    register_atomic_save()
    patch_runner()


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
