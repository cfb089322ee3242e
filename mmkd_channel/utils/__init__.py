from .checkpoint import (UnsafeCheckpointError, load_teacher_checkpoint,
                         register_safe_loaders, safe_torch_load)
from .mim import register_mim_scope, resolve_config_path

__all__ = [
    'UnsafeCheckpointError', 'load_teacher_checkpoint',
    'register_safe_loaders', 'safe_torch_load', 'register_mim_scope',
    'resolve_config_path'
]
