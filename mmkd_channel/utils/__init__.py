from .checkpoint import (CheckpointDownloadError, NotACheckpointError,
                         UnsafeCheckpointError, load_teacher_checkpoint,
                         register_safe_loaders, restricted_torch_load,
                         safe_torch_load)
from .dist import (CPUDistributedDataParallel, init_cpu_dist,
                   revert_sync_bn_for_cpu, setup_launcher)
from .mim import register_mim_scope, resolve_config_path
from .save import (CheckpointSaveError, atomic_torch_save,
                   register_atomic_save, remove_stale_tmp_files,
                   save_checkpoint)

__all__ = [
    'UnsafeCheckpointError', 'NotACheckpointError', 'CheckpointDownloadError',
    'CheckpointSaveError', 'load_teacher_checkpoint', 'register_safe_loaders',
    'safe_torch_load', 'restricted_torch_load', 'register_mim_scope',
    'resolve_config_path', 'atomic_torch_save', 'register_atomic_save',
    'remove_stale_tmp_files', 'save_checkpoint', 'CPUDistributedDataParallel',
    'init_cpu_dist', 'revert_sync_bn_for_cpu', 'setup_launcher'
]
