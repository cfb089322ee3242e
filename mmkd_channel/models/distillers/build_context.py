"""What the distiller learns from the config it is built from.

MMEngine's Runner builds ``cfg.model`` without telling the model which
config file it came from. The distiller wants three things from that
config: the config file's folder (relative ``student`` / ``teacher``
paths resolve from there, as ``_base_`` paths do), the data pipeline
(the size of the build-time check's dummy input) and the top-level
``distill`` (a preset override written at top level).

:func:`current_config` finds the config in this order:

1. the one set with :func:`distill_build_context` (tools and tests that
   build ``cfg.model`` themselves use it);
2. the ``cfg`` of the :class:`mmengine.runner.Runner` whose ``__init__``
   is building the model (found on the call stack: every training script
   that uses the Runner, the hosts' ``tools/train.py`` and ``mim train``
   included, builds the model there).

Without either, relative paths resolve from the working directory, the
dummy input is 64 x 64 and a top-level ``distill`` is not seen.
"""
import inspect
import math
import numbers
import os.path as osp
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, List, Optional, Tuple

from mmengine.config import Config

_CONFIG: ContextVar[Optional[Config]] = ContextVar(
    'mmkd_channel_build_config', default=None)

#: Longest side of the build-time check's dummy input: the pipeline's size
#: scaled down to it (aspect kept). Channels and strides do not depend on
#: the size; a full 1333 x 800 image would only slow the build down.
MAX_CHECK_SIDE = 512
#: Dummy input side when the config has no usable size.
DEFAULT_CHECK_SIDE = 64


@contextmanager
def distill_build_context(cfg: Optional[Config]) -> Iterator[None]:
    """Build models inside this block as if from ``cfg`` (a loaded config).

    Examples:
        >>> cfg = Config.fromfile('configs/cwt/cwt_....py')
        >>> with distill_build_context(cfg):
        ...     model = MODELS.build(cfg.model)
    """
    token = _CONFIG.set(cfg)
    try:
        yield
    finally:
        _CONFIG.reset(token)


def current_config() -> Optional[Config]:
    """The config the model is being built from, if it can be known."""
    cfg = _CONFIG.get()
    if cfg is not None:
        return cfg
    try:
        from mmengine.runner import Runner
    except ImportError:  # pragma: no cover
        return None
    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get('self')
            if isinstance(owner, Runner):
                cfg = getattr(owner, 'cfg', None)
                return cfg if isinstance(cfg, Config) else None
            frame = frame.f_back
    finally:
        del frame
    return None


def config_dir(cfg: Optional[Config]) -> Optional[str]:
    """Absolute folder of the config file, if it came from a file."""
    filename = getattr(cfg, 'filename', None) if cfg is not None else None
    return osp.dirname(osp.abspath(filename)) if filename else None


def resolve_local_path(path: str, role: str, cfg: Optional[Config]) -> str:
    """Resolve a relative host config path from the config's folder.

    ``mmdet::...`` paths and absolute paths are returned unchanged. A
    relative path is looked up in the config file's folder first, then in
    the working directory (as before configs knew their folder).

    Raises:
        FileNotFoundError: naming every absolute path looked at.
    """
    if '::' in path or osp.isabs(path):
        return path
    looked = []
    folder = config_dir(cfg)
    if folder is not None:
        looked.append(osp.normpath(osp.join(folder, path)))
    looked.append(osp.abspath(path))
    for candidate in looked:
        if osp.isfile(candidate):
            return candidate
    where = ' or '.join(repr(p) for p in dict.fromkeys(looked))
    hint = ('relative to the config file' if folder is not None else
            'relative to the working directory (the config file is not '
            'known here)')
    raise FileNotFoundError(
        f'{role}: config file {path!r} does not exist; looked at {where} '
        f"({hint}). Give a path relative to the config file, an absolute "
        "path or the 'mmdet::faster_rcnn/xxx.py' form.")


# --------------------------------------------------------------------- #
# the dummy input's size
def _dicts(obj: Any) -> Iterator[dict]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _dicts(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _dicts(v)


def _pair(value, order: str) -> Optional[Tuple[int, int]]:
    """``(h, w)`` from an int or a pair given as ``order`` (``'wh'``)."""
    if isinstance(value, (int, float)) and value > 0:
        return int(value), int(value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and v > 0 for v in value)):
        a, b = int(value[0]), int(value[1])
        return (b, a) if order == 'wh' else (a, b)
    return None


#: transform type -> (key, order of the pair); the first match wins, test
#: pipelines before train ones.
_SIZE_KEYS = (
    ('CenterCrop', 'crop_size', 'wh'),  # mmpretrain: int or (w, h)
    ('RandomCrop', 'crop_size', 'hw'),  # mmseg: (h, w)
    ('RandomResizedCrop', 'scale', 'wh'),
    ('Resize', 'scale', 'wh'),
    ('RandomResize', 'scale', 'wh'),
    ('ResizeEdge', 'scale', 'wh'),
)


def _pipelines(cfg: Config) -> List[Tuple[str, list]]:
    out = []
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dl = cfg.get(key)
        if not isinstance(dl, dict):
            continue
        for d in _dicts(dl.get('dataset')):
            if isinstance(d.get('pipeline'), (list, tuple)):
                out.append((key, list(d['pipeline'])))
    return out


def input_size_from_config(
        cfg: Optional[Config]) -> Optional[Tuple[Tuple[int, int], str]]:
    """``((h, w), where)`` of the inputs the config's pipeline produces.

    Crop sizes win over resize scales, test pipelines over training ones;
    the result is scaled down to :data:`MAX_CHECK_SIDE` (aspect kept) and
    rounded up to a multiple of 32.
    """
    if cfg is None:
        return None
    for type_name, key, order in _SIZE_KEYS:
        for loader, pipeline in _pipelines(cfg):
            for t in pipeline:
                if not isinstance(t, dict) or t.get('type') != type_name:
                    continue
                size = _pair(t.get(key), order)
                if size is None:
                    continue
                h, w = size
                if type_name == 'ResizeEdge':  # the short edge
                    h = w = size[0]
                scale = min(1.0, MAX_CHECK_SIDE / max(h, w))
                h, w = (32 * math.ceil(v * scale / 32) for v in (h, w))
                return (h, w), f'{loader} {type_name}.{key}'
    return None


def min_input_side(*models) -> int:
    """Smallest input side the models accept, from window attention.

    A Swin-like backbone (a module with a ``window_size``) needs at least
    one window at its deepest stage (stride 32).
    """
    side = 0
    for model in models:
        for m in model.modules():
            ws = getattr(m, 'window_size', None)
            if isinstance(ws, (list, tuple)) and ws and all(
                    isinstance(v, int) for v in ws):
                ws = max(ws)
            if isinstance(ws, int) and not isinstance(ws, bool):
                side = max(side, ws * 32)
    return side


# --------------------------------------------------------------------- #
# a top-level ``distill`` override
def _base_distill(cfg: Config) -> Optional[dict]:
    """The top-level ``distill`` of the config file's bases."""
    filename = getattr(cfg, 'filename', None)
    if not filename or not osp.isfile(filename):
        return None
    merged = None
    try:
        for base in Config._get_base_files(filename):
            path, _ = Config._get_cfg_path(base, filename)
            if not osp.isabs(path):
                path = osp.join(osp.dirname(filename), path)
            base_cfg = Config.fromfile(path, import_custom_modules=False)
            if 'distill' in base_cfg:
                value = base_cfg.to_dict()['distill']
                merged = value if merged is None else {**merged, **value}
    except Exception:  # a base we cannot read again: no decision
        return None
    return merged


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _unscoped(obj: Any) -> Any:
    """``obj`` (plain) without ``_scope_`` keys."""
    if isinstance(obj, dict):
        return {k: _unscoped(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return [_unscoped(v) for v in obj]
    return obj


def resolve_distill(distill: Any, cfg: Optional[Config]) -> Any:
    """The ``distill`` the distiller should use, given the top level.

    A config that wraps its model with ``distill=_base_.distill`` copies
    the preset *before* the file's own top-level ``distill = dict(...)``
    is merged into it, so that override would be lost. Rules, with ``T``
    the top-level ``distill``, ``M`` the model's and ``B`` the top-level
    ``distill`` of the config file's bases:

    * no ``T``, or ``T == M``, or ``T == B`` (the file does not change the
      top level): ``M``;
    * ``M`` is missing or ``M == B`` (the model holds the untouched
      copy): ``T``, the top level with the file's override merged in;
    * both changed, differently: an error saying how to override;
    * ``B`` unknown (a config without bases, e.g. one dumped to a work
      directory): ``M``, with a warning that the top level is not used.

    The chosen value is written back to ``cfg.model.distill``, so the
    config the Runner dumps into the work directory is what was trained.
    """
    if cfg is None or 'distill' not in cfg:
        return distill
    top = _plain(cfg.to_dict()['distill'])
    model = _plain(distill) if distill is not None else None
    if model is None or top == model:
        chosen = top if model is None else distill
        return _write_back(cfg, chosen)
    base = _base_distill(cfg)
    if base is None:
        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().warning(
            'FeatureDistiller: the top-level `distill` of the config '
            'differs from `model.distill` and the config has no bases to '
            'tell which one was changed; using `model.distill`.')
        return distill
    # A base named `scope::path` gets `_scope_` keys from MMEngine when it
    # is inherited, not when it is read again here: compare without them.
    base = _unscoped(base)
    if _unscoped(top) == base:
        return _write_back(cfg, distill)
    if _unscoped(model) == base:
        return _write_back(cfg, top)
    raise ValueError(
        'FeatureDistiller: the top-level `distill` of the config differs '
        'from `model.distill`, and the distiller cannot tell which one you '
        f'changed.\n  top-level distill: {top}\n  model.distill:     '
        f'{model}\nOverride a preset field at top level, e.g. '
        '`distill = dict(fpn=dict(loss=dict(loss_weight=2.0)))`, and keep '
        '`distill=_base_.distill` in the model (the distiller then applies '
        'the top-level value); or change `model.distill` and not the top '
        'level, not both.')


def _write_back(cfg: Config, distill: Any) -> Any:
    """Make ``cfg.model.distill`` (and the top level) say ``distill``."""
    try:
        if isinstance(cfg.get('model'), dict):
            cfg.model['distill'] = distill
        cfg['distill'] = distill
    except Exception:  # a read-only or unusual config: nothing to record
        pass
    return distill


#: Largest side of a dummy input (a 2048 x 1024 Cityscapes image fits).
MAX_CHECK_SIDE = 4096


def check_shape_value(shape) -> Tuple[int, ...]:
    """A given ``check_input_shape`` as a tuple ``(N, C, H, W)``.

    Raises:
        ValueError: naming the value and the form it must have.
    """
    ok = (
        isinstance(shape, (tuple, list)) and len(shape) == 4 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            and v > 0 for v in shape) and max(shape[2:]) <= MAX_CHECK_SIDE)
    if not ok:
        raise ValueError(
            'FeatureDistiller: check_input_shape must be (N, C, H, W) with '
            f'positive ints and H, W <= {MAX_CHECK_SIDE} (e.g. (1, 3, 224, '
            f"224), the training crop size), 'auto' or None; got "
            f'{shape!r}')
    return tuple(int(v) for v in shape)
