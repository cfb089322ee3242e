"""Runner hooks of mmkd_channel (registered in ``mmkd_channel.HOOKS``)."""
from .hooks import (DistillNaNHook, DistillStopHook, EpochSeedHook,
                    TeacherEvalHook, get_distiller)

__all__ = [
    'DistillNaNHook', 'DistillStopHook', 'EpochSeedHook', 'TeacherEvalHook',
    'get_distiller'
]
