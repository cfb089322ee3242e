from .checkpoint import (UnsafeCheckpointError, atomic_torch_save,
                         load_teacher_checkpoint, register_atomic_save,
                         register_safe_loaders, safe_torch_load,
                         save_checkpoint)
from .dist import (CPUDistributedDataParallel, init_cpu_dist,
                   revert_sync_bn_for_cpu, setup_launcher)
from .mim import register_mim_scope, resolve_config_path

__all__ = [
    'UnsafeCheckpointError', 'load_teacher_checkpoint',
    'register_safe_loaders', 'safe_torch_load', 'register_mim_scope',
    'resolve_config_path'
]

# issue 5: atomic checkpoint writes and the CPU (gloo) distributed path
__all__ += [
    'atomic_torch_save', 'register_atomic_save', 'save_checkpoint',
    'CPUDistributedDataParallel', 'init_cpu_dist', 'revert_sync_bn_for_cpu',
    'setup_launcher'
]
