from .distill_nan_hook import DistillNaNHook
from .distill_stop_hook import DistillStopHook
from .epoch_seed_hook import EpochSeedHook
from .teacher_eval_hook import TeacherEvalHook
from .utils import get_distiller

__all__ = [
    'DistillNaNHook', 'DistillStopHook', 'EpochSeedHook', 'TeacherEvalHook',
    'get_distiller'
]
