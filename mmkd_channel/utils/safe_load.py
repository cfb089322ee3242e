"""The two checkpoint readers, and what they check before unpickling.

* :func:`restricted_torch_load` reads weights from any checkpoint: every
  pickled global outside tensors, containers and an allowlist becomes an
  inert placeholder (see :mod:`.restricted_pickle`), so nothing runs.
* :func:`safe_torch_load` is the strict reader resuming needs: the whole
  training state, so any global outside MMEngine's allowlist is refused
  with :class:`UnsafeCheckpointError` naming the re-save tool.

Both first run :func:`check_checkpoint_file`, which turns an empty,
truncated, TorchScript or HTML file into a :class:`NotACheckpointError`
that says what the file is, instead of an unpickling traceback. Kept apart
from the MMEngine wiring (:mod:`.loaders`) so the readers can be used, and
read, without it.
"""
import builtins
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, List

import torch
from mmengine.logging import print_log

from . import restricted_pickle
from .restricted_pickle import collect_replaced

#: the project's one-line fix for a checkpoint --resume refuses
RESAVE_COMMAND = ('python tools/model_converters/resave_checkpoint.py '
                  '{src} {dst}')
#: what plain MMEngine pickles for its HistoryBuffer statistics
HOST_GLOBALS = {'builtins.getattr'}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled global outside the allowlist."""


class NotACheckpointError(RuntimeError):
    """A file is empty, truncated or not a PyTorch checkpoint at all."""


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
