"""Route MMEngine's checkpoint I/O through this project's readers.

:func:`register_safe_loaders` (called when :mod:`mmkd_channel` is imported)
registers the local and ``http(s)://`` schemes of MMEngine's
``CheckpointLoader``: they read with the restricted reader, or with the
strict one inside :func:`resuming` (``Runner.resume``); every scheme,
MMEngine's own included, returns checkpoints without config text; the
URL scheme downloads once per node and says which rank failed. Kept apart
from the readers (:mod:`.safe_load`) because this is the part that changes
MMEngine's global state.
"""
import contextvars
import os
import os.path as osp
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint_clean import drop_config_text
from .safe_load import (NotACheckpointError, restricted_torch_load,
                        safe_torch_load)
from .save import register_atomic_save


class CheckpointDownloadError(OSError):
    """A checkpoint URL could not be fetched."""


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
