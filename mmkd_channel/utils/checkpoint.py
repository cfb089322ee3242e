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

This module is the one import path for all of it; the code lives by
concern in modules a reader can take in one at a time:

* :mod:`.safe_load`: the file checks and the two readers;
* :mod:`.checkpoint_clean`: dropping config text and placeholders;
* :mod:`.loaders`: the ``CheckpointLoader`` schemes, downloads, resuming;
* :mod:`.teacher_weights`: finding and loading the teacher's weights;
* :mod:`.save`: atomic writes.
"""
from .checkpoint_clean import contains_inert, drop_config_text, strip_inert
from .loaders import (CheckpointDownloadError, load_from_http, load_from_local,
                      register_safe_loaders, resuming)
from .safe_load import (NotACheckpointError, UnsafeCheckpointError,
                        check_checkpoint_file, mmengine_safe_globals,
                        resave_command, restricted_torch_load, safe_torch_load)
from .save import (_ORIGINAL_SAVE_CHECKPOINT, atomic_torch_save,
                   register_atomic_save, save_checkpoint)
from .teacher_weights import extract_state_dict, load_teacher_checkpoint

__all__ = [
    'UnsafeCheckpointError',
    'NotACheckpointError',
    'CheckpointDownloadError',
    'safe_torch_load',
    'restricted_torch_load',
    'check_checkpoint_file',
    'mmengine_safe_globals',
    'resave_command',
    'drop_config_text',
    'strip_inert',
    'contains_inert',
    'resuming',
    'load_from_local',
    'load_from_http',
    'register_safe_loaders',
    'extract_state_dict',
    'load_teacher_checkpoint',
    # written by .save, kept importable from here
    '_ORIGINAL_SAVE_CHECKPOINT',
    'atomic_torch_save',
    'register_atomic_save',
    'save_checkpoint'
]
