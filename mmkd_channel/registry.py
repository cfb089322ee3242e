"""Registries of the ``mmkd_channel`` scope.

Each registry is a child of MMEngine's root registry, so an mmdet, mmseg or
mmpretrain config reaches our modules with ``mmkd_channel.TypeName`` or
``_scope_='mmkd_channel'``; ``locations`` makes the registry import the
modules that register into it on first use.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmkd_channel',
    locations=['mmkd_channel.models'])

HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmkd_channel',
    locations=['mmkd_channel.engine'])

__all__ = ['MODELS', 'HOOKS']
