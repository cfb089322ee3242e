from .build_context import current_config, distill_build_context
from .feature_distiller import FeatureDistiller, build_host_model
from .pair_check import DistillCheckError
from .recorder import FeatureRecorder, StopForward, get_submodule, parse_path

__all__ = [
    'FeatureDistiller', 'FeatureRecorder', 'StopForward', 'build_host_model',
    'get_submodule', 'parse_path', 'DistillCheckError',
    'distill_build_context', 'current_config'
]
