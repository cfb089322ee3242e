"""Build the student and teachers from host model dicts or config files,
and connectors / losses from this project's registry."""
import copy
import os.path as osp
from typing import Optional, Union

from mmengine.config import Config, ConfigDict
from torch import nn

from mmkd_channel.registry import MODELS
from mmkd_channel.utils.mim import resolve_config_path
from .build_context import resolve_local_path

ModelCfg = Union[str, dict, ConfigDict]

#: What ``Config.fromfile`` reads.
CONFIG_EXTENSIONS = ('.py', '.json', '.yaml', '.yml')


def host_model_cfg(cfg: ModelCfg,
                   role: str,
                   data_preprocessor: Optional[dict] = None,
                   context: Optional[Config] = None) -> dict:
    """The model dict :func:`build_host_model` builds (see there)."""
    top_dp = data_preprocessor
    if isinstance(cfg, str):
        path = cfg
        try:
            full_path = resolve_config_path(
                resolve_local_path(path, role, context))
        except FileNotFoundError as e:
            msg = str(e)
            raise FileNotFoundError(
                msg if msg.startswith(role) else f'{role}: config {msg}'
            ) from None
        if not osp.isfile(full_path):
            raise FileNotFoundError(
                f'{role}: config file {path!r} does not exist. Give a local '
                "path or the 'mmdet::faster_rcnn/xxx.py' form.")
        if osp.splitext(full_path)[1].lower() not in CONFIG_EXTENSIONS:
            ckpt = (f" and this file as `{role}_ckpt`" if role == 'teacher'
                    else ", and load this file with init_cfg=dict(type="
                    "'Pretrained', checkpoint=...)")
            raise ValueError(
                f'{role}: {path!r} is not a config file (a config ends with '
                f"{', '.join(CONFIG_EXTENSIONS)}). Give the {role}'s model "
                f"config as `{role}`{ckpt}.")
        host_cfg = Config.fromfile(full_path)
        if 'model' not in host_cfg:
            raise KeyError(f'{role}: config {path!r} defines no `model`.')
        cfg = copy.deepcopy(host_cfg.model)
        if host_cfg.get('default_scope') and '_scope_' not in cfg:
            cfg['_scope_'] = host_cfg.default_scope
        if isinstance(host_cfg.get('data_preprocessor'), dict):
            top_dp = host_cfg.data_preprocessor
    elif isinstance(cfg, dict):
        cfg = copy.deepcopy(cfg)
    else:
        raise TypeError(f'{role} must be a model dict or a config path, got '
                        f'{type(cfg).__name__}')
    if 'type' not in cfg:
        raise KeyError(f'{role}: the model dict has no `type`.')
    if isinstance(top_dp, dict) and cfg.get('data_preprocessor') is None:
        cfg['data_preprocessor'] = copy.deepcopy(top_dp)
    type_name = cfg['type']
    if isinstance(type_name, str) and '.' in type_name and ('_scope_'
                                                            not in cfg):
        # 'mmpretrain.ImageClassifier' as _scope_: the host's own nested
        # builds (its default 'ClsDataPreprocessor') then look in its
        # registry, not in the default scope of the run (mmdet, mmengine)
        cfg['_scope_'], cfg['type'] = type_name.split('.', 1)
    return cfg


def build_host_model(cfg: ModelCfg,
                     role: str,
                     data_preprocessor: Optional[dict] = None,
                     context: Optional[Config] = None) -> nn.Module:
    """Build an mmdet / mmseg / mmpretrain model from a dict or config path.

    Args:
        cfg (str | dict): A model dict (``type`` in the host's scope, or with
            ``_scope_``), or the path of a host config file, local or in the
            ``mmdet::faster_rcnn/...py`` form; its ``model`` is built in its
            ``default_scope``, with the file's top-level
            ``data_preprocessor`` when the model dict has none (mmpretrain
            keeps it there). A relative path is looked up in the folder of
            the config being built (``context``), then in the working
            directory.
        role (str): ``'student'`` or ``'teacher'`` (for messages).
        data_preprocessor (dict, optional): Used when the model dict has
            no ``data_preprocessor`` of its own.
        context (Config, optional): The config being built, for relative
            paths.
    """
    return MODELS.build(host_model_cfg(cfg, role, data_preprocessor, context))


def build_own(cfg: Optional[dict], what: str) -> Optional[nn.Module]:
    """Build a connector or loss, preferring this project's scope.

    A bare type name registered here (``'FeatureL2Loss'``) is built from the
    ``mmkd_channel`` registry even while the runner's default scope is
    ``mmdet``; other names go through the host scope as usual.
    """
    if cfg is None:
        return None
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{what} must be a dict with a `type`, got {cfg!r}')
    cfg = copy.deepcopy(cfg)
    type_name = cfg['type']
    if (isinstance(type_name, str) and '.' not in type_name
            and '_scope_' not in cfg and type_name in MODELS.module_dict):
        cfg['_scope_'] = 'mmkd_channel'
    try:
        return MODELS.build(cfg)
    except KeyError as e:
        raise KeyError(f'{what}: {e}') from None
    except (TypeError, ValueError) as e:
        raise type(e)(f'{what}: {e}') from None
