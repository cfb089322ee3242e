"""What a loaded checkpoint loses before it is used or written again.

A checkpoint read by the restricted reader may hold inert placeholders
where it pickled code, and any checkpoint may hold config text that
MMEngine would execute (``Runner.resume``, the inferencers). The MMEngine
loaders (:mod:`.loaders`) drop the config text of everything they read;
the re-save and export tools also strip the placeholders before writing a
copy, so the copy holds only data the strict reader accepts.
"""
from typing import Any, List

from .restricted_pickle import Inert

#: config text MMEngine would execute, where it keeps it
CONFIG_TEXT_KEYS = ('config', 'cfg')


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
