"""Re-save any checkpoint so that ``--resume`` accepts it, running nothing.

Usage::

    python tools/model_converters/resave_checkpoint.py IN.pth OUT.pth

``--resume`` reads checkpoints with a strict reader that refuses every
pickled global except tensors, containers, MMEngine's ``HistoryBuffer`` and
numpy arrays. A checkpoint written by a host's own ``tools/train.py``
(plain MMEngine) pickles ``builtins.getattr`` for its ``HistoryBuffer``
statistics and is refused. This tool reads ``IN`` with the restricted
reader (every other global becomes an inert placeholder: never imported,
never called), drops those placeholders and the config source text
(``meta['config']`` / ``meta['cfg']``, which MMEngine would execute), and
writes ``OUT`` atomically; ``OUT`` is then read back with the strict reader
to prove that ``--resume`` accepts it. Weights, optimizer and scheduler
states, the message hub and the other meta data are kept.
"""
import argparse
import os
import os.path as osp
import sys

import mmkd_channel  # noqa: F401  (HistoryBuffer pickles without getattr)
from mmkd_channel.utils import (atomic_torch_save, restricted_torch_load,
                                safe_torch_load)
from mmkd_channel.utils.checkpoint import drop_config_text, strip_inert


def resave_checkpoint(src: str, dst: str) -> dict:
    """Write ``src`` to ``dst`` without pickled code or config text.

    Args:
        src (str): Any PyTorch checkpoint.
        dst (str): Output path (must differ from ``src``).

    Returns:
        dict: ``dropped_config`` (where config text was) and ``keys`` (the
        top-level keys written).

    Raises:
        ValueError: if ``dst`` is ``src``.
    """
    if osp.abspath(src) == osp.abspath(dst):
        raise ValueError('give OUT different from IN: the original is kept')
    ckpt = restricted_torch_load(src, map_location='cpu')
    dropped = drop_config_text(ckpt)
    ckpt = strip_inert(ckpt)
    atomic_torch_save(ckpt, dst)
    try:
        safe_torch_load(dst, map_location='cpu')
    except Exception:
        os.remove(dst)
        raise
    return dict(
        dropped_config=dropped,
        keys=list(ckpt) if isinstance(ckpt, dict) else [])


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Re-save a checkpoint for --resume, executing nothing')
    parser.add_argument('src', help='checkpoint to read')
    parser.add_argument('dst', help='checkpoint to write')
    args = parser.parse_args()
    result = resave_checkpoint(args.src, args.dst)
    print(
        f'{args.dst}: {", ".join(result["keys"])}; dropped config text: '
        f'{", ".join(result["dropped_config"]) or "none"}',
        file=sys.stdout)


if __name__ == '__main__':
    main()
