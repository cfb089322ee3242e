from .feature_distiller import FeatureDistiller, build_host_model
from .recorder import FeatureRecorder, StopForward, get_submodule, parse_path

__all__ = [
    'FeatureDistiller', 'FeatureRecorder', 'StopForward', 'build_host_model',
    'get_submodule', 'parse_path'
]
