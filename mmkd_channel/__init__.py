"""mmkd_channel: feature knowledge distillation for OpenMMLab toolboxes."""
from .registry import HOOKS, MODELS  # noqa: I001
from .utils import register_mim_scope, register_safe_loaders
from .version import __version__

register_safe_loaders()
register_mim_scope()

from . import models  # noqa: E402,F401

__all__ = ['__version__', 'MODELS', 'HOOKS']
