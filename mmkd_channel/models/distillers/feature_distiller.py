"""FeatureDistiller: a student, a frozen teacher and feature losses."""
import copy
import inspect
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from mmkd_channel.utils.checkpoint import load_teacher_checkpoint
from mmkd_channel.utils.mim import resolve_config_path
from ..connectors.base import ChannelConnector
from ..connectors.spatial_align import (align_hint, call_connector,
                                        spatial_sizes)
from ..losses.base import as_tensor_list
from .build_context import (DEFAULT_CHECK_SIDE, current_config,
                            input_size_from_config, min_input_side,
                            resolve_distill, resolve_local_path)
from .host_api_guard import RefuseHostModelArgs
from .loss_keys import rename_reserved_losses
from .loss_scale import LossScaleMonitor
from .pair_check import (DistillCheckError, connectors_of, is_pooled,
                         is_spatial, last_spatial_module, shapes,
                         unwrap_single)
from .preprocess import TeacherInputRemap
from .recorder import FeatureRecorder, get_submodule, parse_path
from .teacher_precision import TeacherPrecision
from .teachers import (SINGLE, check_all_used, normalise_teachers,
                       resolve_teacher_model)

ModelCfg = Union[str, dict, ConfigDict]


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


class _Pair(nn.Module):
    """One distillation term: modules to compare, connectors and a loss."""

    def __init__(self,
                 name: str,
                 student: str,
                 teacher: str,
                 connector,
                 teacher_connector,
                 loss,
                 teacher_model: str = SINGLE) -> None:
        super().__init__()
        self.name = name
        self.teacher_model = teacher_model
        self.student_path = student
        self.teacher_path = teacher
        self.connector = self._build_connector(connector, 'connector')
        self.teacher_connector = self._build_connector(teacher_connector,
                                                       'teacher_connector')
        self.loss = build_own(loss, f"distill['{name}'].loss")

    def _build_connector(self, cfg, key):
        what = f"distill['{self.name}'].{key}"
        if isinstance(cfg, (list, tuple)):
            return nn.ModuleList(
                build_own(c, f'{what}[{i}]') for i, c in enumerate(cfg))
        return build_own(cfg, what)

    @staticmethod
    def _connect(connector, feat, size=None):
        """Apply the connector(s); ``size``: the teacher's ``H x W`` (per
        level for tuples), used by connectors with ``align``."""
        if connector is None:
            return feat
        if isinstance(feat, (tuple, list)):
            sizes = size if isinstance(size, tuple) and len(size) == len(
                feat) else (None, ) * len(feat)
            if isinstance(connector, nn.ModuleList):
                if len(connector) != len(feat):
                    raise ValueError(
                        f'{len(connector)} connectors for {len(feat)} '
                        'feature levels')
                return tuple(
                    call_connector(c, f, z)
                    for c, f, z in zip(connector, feat, sizes))
            return tuple(
                call_connector(connector, f, z) for f, z in zip(feat, sizes))
        if isinstance(connector, nn.ModuleList):
            raise ValueError('a list of connectors needs a tuple of features')
        return call_connector(connector, feat, size)

    def unbuilt(self) -> List[Tuple[str, ChannelConnector]]:
        """``(key, connector)`` of the connectors still missing widths."""
        return [(key, c) for key in ('connector', 'teacher_connector')
                for c in connectors_of(getattr(self, key))
                if isinstance(c, ChannelConnector) and not c.is_built]

    def forward(self,
                student_feat,
                teacher_feat,
                data_samples: Optional[list] = None) -> Tensor:
        # Losses whose forward names `data_samples` (SAKD) also get the
        # batch's data samples; every other loss gets the two features.
        from ..losses.loss_inputs import call_loss
        student_feat, teacher_feat = unwrap_single(student_feat, teacher_feat)
        # teacher first: its H x W is the target of the student's `align`
        t = self._connect(self.teacher_connector, teacher_feat)
        s = self._connect(self.connector, student_feat, spatial_sizes(t))
        return call_loss(self.loss, s, t, data_samples)

    def align_hint(self, student_feat, teacher_feat) -> str:
        """Suggest ``align`` when the connected features differ only in
        ``H x W``; ``''`` otherwise."""
        try:
            s = self._connect(self.connector, student_feat)
            t = self._connect(self.teacher_connector, teacher_feat)
        except Exception:
            return ''
        return align_hint(s, t)


def _with_context(error: Exception, desc: str) -> Exception:
    """``error`` re-created with ``desc`` (the pair, paths and shapes)."""
    if isinstance(error, (ValueError, RuntimeError)):
        return ValueError(f'{desc}: {error}')
    msg = f'{desc}: {type(error).__name__}: {error}'
    try:
        return type(error)(msg)
    except Exception:  # exception types with other constructors
        return RuntimeError(msg)


@MODELS.register_module()
class FeatureDistiller(RefuseHostModelArgs, BaseModel):
    """Train ``student`` with its task losses plus feature distillation.

    The teacher is frozen: ``requires_grad=False``, always in eval mode,
    run under ``no_grad``, never in the optimizer, and kept out of
    ``state_dict`` so checkpoints stay student-sized (it is not a child
    module; it is moved between devices with the distiller). Features are
    recorded with forward hooks at dotted module paths; ``predict`` and
    ``tensor`` modes run the student alone.

    When it is built, the distiller runs both models once on a dummy input
    (its size from the config's data pipeline, see ``check_input_shape``)
    and

    * fills the ``in_channels`` / ``out_channels`` connectors left out or
      ``'auto'`` (student channels in, teacher channels out), so presets
      carry no widths and the optimizer sees ordinary parameters;
    * checks every pair and raises one error listing every problem with
      its fix.

    Attributes the distiller does not define are looked up on the student,
    so host hooks that reach into ``runner.model`` (``model.bbox_head``,
    ``model.head``, ...) work on the distiller as on the student.

    Args:
        student (dict | str): Student model dict (usually ``_base_.model``
            of the host config) or host config path.
        teacher (dict | str): Teacher model dict or host config path, e.g.
            ``'mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py'``. A
            relative path is taken from the config file's folder.
        teacher_ckpt (str, optional): Teacher checkpoint, local path or URL,
            loaded with ``torch.load(weights_only=True)`` and an allowlist.
            ``None`` keeps a randomly initialised teacher (tests only).
        distill (dict): ``name -> dict(student=PATH, teacher=PATH,
            connector=CFG, teacher_connector=CFG, loss=CFG)``. ``teacher``
            defaults to the student path. ``connector`` may be a list, one
            per feature level. A path may be ``'backbone.stage(i)'`` (the
            output of stage ``i``) or ``'backbone.ofd_stage(i)'`` (OFD's
            pre-ReLU feature), resolved per model. Each term is returned as
            ``loss_distill_<name>``. A top-level ``distill`` of the config
            that overrides a preset field is applied (see
            :func:`~.build_context.resolve_distill`). With several teachers
            each term names its own with ``teacher_model='<name>'``.
        truncate_teacher (bool): Stop each teacher's forward pass once all
            its recorded modules produced their outputs. Default True.
        check_input_shape (tuple | str, optional): Shape ``(N, 3, H, W)``
            of the dummy input of the build-time check. ``'auto'`` (the
            default): the crop / resize size of the config's pipeline
            (longest side at most 512), at least one attention window at
            stride 32 for Swin-like backbones, else 64 x 64. ``None`` skips
            the check (then connectors need explicit widths).
        data_preprocessor (dict, optional): Defaults to the student's. A
            dict without ``type`` (mmpretrain's top-level one) configures
            the student's own preprocessor.
        teacher_trainable (bool): Must be False (the default): the teacher
            is frozen. True raises ``NotImplementedError``.
        teachers (dict, optional): Several teachers instead of ``teacher``
            / ``teacher_ckpt``: ``name -> dict(config=..., ckpt=...)``.
            Each is frozen, kept out of the optimizer and checkpoints, run
            only as far as its own recorded modules, fed its own
            normalisation, and available as ``self.teachers[name]``
            (``self.teacher`` is the first).
        teacher_dtype (str): ``'fp32'`` (default), ``'bf16'``, ``'fp16'``
            or ``'auto'`` (bf16 where the CPU / GPU runs it fast, else
            fp32; the log says which and why). The teacher is converted
            once, after its checkpoint is loaded; its recorded features
            are cast back to the student's dtype. See
            :class:`~.teacher_precision.TeacherPrecision`.
        teacher_channels_last (bool): Run the teacher in channels-last
            memory layout. Default False.

    Examples:
        >>> # in a config inheriting 'mmdet::faster_rcnn/...r50...py'
        >>> model = dict(
        ...     _delete_=True,
        ...     type='mmkd_channel.FeatureDistiller',
        ...     student=_base_.model,
        ...     teacher='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
        ...     teacher_ckpt='https://download.openmmlab.com/...pth',
        ...     distill=_base_.distill)  # a preset, e.g. CWT on FPN levels
    """

    # Switched by the hooks of mmkd_channel.engine:
    #: False once ``DistillStopHook`` stopped distillation.
    distill_enabled: bool = True
    #: A NaN / inf loss: ``'raise'`` (default), ``'skip'`` the step
    #: (``DistillNaNHook(skip=True)``) or ``'ignore'``.
    nonfinite_policy: str = 'raise'
    #: Set when ``'skip'`` zeroed this step's losses (read by the hook).
    skipped_step: bool = False
    #: Names of the non-finite loss terms of the last checked step.
    nonfinite_terms: List[str] = []

    def __init__(self,
                 student: ModelCfg,
                 teacher: Optional[ModelCfg] = None,
                 teacher_ckpt: Optional[str] = None,
                 distill: Optional[dict] = None,
                 truncate_teacher: bool = True,
                 check_input_shape: Union[Sequence[int], str, None] = 'auto',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 teacher_trainable: bool = False,
                 teachers: Optional[dict] = None,
                 teacher_dtype: str = 'fp32',
                 teacher_channels_last: bool = False) -> None:
        if teacher_trainable:
            raise NotImplementedError(
                'FeatureDistiller: teacher_trainable=True is not supported; '
                'the teacher is frozen (no grad, eval mode, out of the '
                'optimizer and checkpoints). Set teacher_trainable=False.')
        context = current_config()
        teacher_cfgs = normalise_teachers(teacher, teacher_ckpt, teachers)
        specs = self._normalise_distill(
            resolve_distill(distill, context), list(teacher_cfgs))
        check_all_used(
            list(teacher_cfgs), [s['teacher_model'] for s in specs.values()])
        precisions = {
            name: TeacherPrecision(teacher_dtype, teacher_channels_last)
            for name in teacher_cfgs
        }
        untyped_dp = (
            data_preprocessor if isinstance(data_preprocessor, dict)
            and 'type' not in data_preprocessor else None)
        student_model = build_host_model(student, 'student', untyped_dp,
                                         context)
        if data_preprocessor is None or untyped_dp is not None:
            data_preprocessor = getattr(student_model, 'data_preprocessor',
                                        None)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = student_model
        built = {
            name: self._build_teacher(name, context, **cfg)
            for name, cfg in teacher_cfgs.items()
        }
        # Not child modules: out of state_dict, optimizer and DDP.
        object.__setattr__(self, 'teachers', built)
        object.__setattr__(self, 'teacher', next(iter(built.values())))
        self.teacher_ckpts = {n: c['ckpt'] for n, c in teacher_cfgs.items()}
        self.teacher_ckpt = next(iter(self.teacher_ckpts.values()))
        self.truncate_teacher = truncate_teacher
        remaps = {
            name:
            TeacherInputRemap.between(
                self.data_preprocessor,
                getattr(model, 'data_preprocessor', None))
            for name, model in built.items()
        }
        self.teacher_input = next(iter(remaps.values()))
        # non-persistent buffers: moved with the distiller, not saved
        self.teacher_inputs = nn.ModuleDict({
            n: r
            for n, r in remaps.items() if r is not None
        })
        self.teacher_precisions = precisions
        self.teacher_precision = next(iter(precisions.values()))
        self.loss_scale = LossScaleMonitor()
        self._checked = False
        self._check_skipped: Optional[str] = None

        rng_at_pairs = torch.get_rng_state()
        self.distill_pairs = nn.ModuleDict({
            name: _Pair(name, **spec)
            for name, spec in specs.items()
        })
        # Connectors whose widths come from the dry run are created after
        # it, from the random state they would have been created with here
        # (when no other pair module drew from it): the same model as with
        # the widths written in the config.
        self._rng_at_pairs = (None if any(
            True for _ in self.distill_pairs.parameters()) else rng_at_pairs)
        problems = self._resolve_paths()
        self.student_recorder = FeatureRecorder(self.student,
                                                self._valid_paths('student'),
                                                'student')
        self.teacher_recorders = {
            name:
            FeatureRecorder(model, self._valid_paths('teacher', name),
                            self._teacher_role(name))
            for name, model in self.teachers.items()
        }
        self.teacher_recorder = next(iter(self.teacher_recorders.values()))
        problems += self._bind_connectors()
        shape, source = self._check_shape(check_input_shape, context)
        # after the checkpoint and the connectors' binding (OFD reads the
        # teacher's BNs), before the check runs the teacher in its dtype
        for name, model in self.teachers.items():
            precisions[name].convert(
                model,
                *self._teacher_trace(
                    shape or (1, 3, DEFAULT_CHECK_SIDE, DEFAULT_CHECK_SIDE),
                    name))
        if shape is not None:
            problems += self._dry_run(shape, source)
            # Earlier versions drew the dummy input from the global random
            # generator; drawing as much keeps seeded runs identical.
            legacy = (
                tuple(check_input_shape)
                if not isinstance(check_input_shape, str) else
                (1, 3, DEFAULT_CHECK_SIDE, DEFAULT_CHECK_SIDE))
            torch.rand(*legacy)
        problems += self._unbuilt_problems(shape, source)
        self._dummy_inputs = None
        self._raise(problems, shape, source)

    # ------------------------------------------------------------------ #
    # the host sees through the distiller
    def __getattr__(self, name: str):
        """Attributes the distiller does not have come from the student.

        ``nn.Module.__getattr__`` first finds parameters, buffers and
        submodules of the distiller; only then is the student asked, so
        ``model.bbox_head`` (YOLOX's mode switch hook) or ``model.head``
        (mmpretrain's hooks) reach the student.
        """
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get('_modules') or {}
            student = modules.get('student')
            if student is None or name.startswith('__'):
                raise
        try:
            return getattr(student, name)
        except AttributeError:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute "
                f"'{name}', and neither has its student "
                f'({type(student).__name__})') from None

    # ------------------------------------------------------------------ #
    # construction helpers
    def _teacher_role(self, name: str) -> str:
        """``'teacher'``, or ``"teacher 'det'"`` with several (messages)."""
        return 'teacher' if len(self.teachers) == 1 else f'teacher {name!r}'

    def _build_teacher(self, name: str, context, config: ModelCfg,
                       ckpt: Optional[str]) -> nn.Module:
        """Build, load and freeze one teacher."""
        role = 'teacher' if name == SINGLE else f'teachers[{name!r}]'
        model = build_host_model(config, role, None, context)
        if ckpt is not None:
            load_teacher_checkpoint(model, ckpt)
        else:
            ckpt_key = 'teacher_ckpt' if name == SINGLE else f'{role}.ckpt'
            MMLogger.get_current_instance().warning(
                f'FeatureDistiller: {ckpt_key} is None, the {role} keeps its '
                'random initialisation.')
        model.eval()
        model.requires_grad_(False)
        return model

    @staticmethod
    def _normalise_distill(distill, teachers: Sequence[str]) -> dict:
        if not distill:
            raise ValueError(
                'FeatureDistiller: `distill` is empty, so nothing would be '
                "distilled. Give e.g. distill=dict(fpn=dict(student='neck', "
                "connector=..., loss=dict(type='FeatureL2Loss'))) or inherit "
                'a preset from configs/_base_/distill/.')
        if isinstance(distill, (list, tuple)):
            items = []
            for i, spec in enumerate(distill):
                spec = dict(spec)
                items.append((spec.pop('name', f'{i}'), spec))
        elif isinstance(distill, dict):
            items = list(distill.items())
        else:
            raise TypeError('FeatureDistiller: `distill` must be a dict '
                            f'name -> spec, got {type(distill).__name__}')
        allowed = {
            'student', 'teacher', 'connector', 'teacher_connector', 'loss',
            'teacher_model'
        }
        specs = {}
        for name, spec in items:
            if not isinstance(spec, dict):
                raise TypeError(f"distill['{name}'] must be a dict, got "
                                f'{spec!r}')
            unknown = set(spec) - allowed
            if unknown:
                raise KeyError(f"distill['{name}']: unknown keys "
                               f'{sorted(unknown)}; allowed: '
                               f'{sorted(allowed)}')
            if 'student' not in spec:
                raise KeyError(f"distill['{name}'] needs `student`, the "
                               "dotted path of a student module, e.g. 'neck'")
            if spec.get('loss') is None:
                raise KeyError(f"distill['{name}'] needs `loss`, e.g. "
                               "dict(type='FeatureL2Loss', loss_weight=1.0)")
            spec = dict(spec)
            spec.setdefault('teacher', spec['student'])
            spec.setdefault('connector', None)
            spec.setdefault('teacher_connector', None)
            spec['teacher_model'] = resolve_teacher_model(
                name, spec, list(teachers))
            specs[str(name)] = spec
        return specs

    def _resolve_paths(self) -> List[str]:
        """Resolve ``stage(i)`` paths; collect paths that do not exist."""
        from ..ofd import resolve_stage_path  # ofd imports the recorder
        problems = []
        self._bad_paths = set()
        for pair in self.distill_pairs.values():
            teacher = self.teachers[pair.teacher_model]
            for role, model in (('student', self.student), ('teacher',
                                                            teacher)):
                key = f'{role}_path'
                spec = getattr(pair, key)
                try:
                    spec = resolve_stage_path(model, spec)
                    setattr(pair, key, spec)
                    get_submodule(model,
                                  parse_path(spec)[0], role,
                                  f'{role} module path')
                except (KeyError, ValueError, IndexError) as e:
                    self._bad_paths.add((pair.name, role))
                    msg = str(e.args[0]) if e.args else str(e)
                    if f'{role} module path' not in msg:
                        msg = f'{role} module path {spec!r}: {msg}'
                    other = 'teacher' if role == 'student' else 'student'
                    problems.append(
                        f"distill['{pair.name}']: {msg} Fix: give an "
                        f'existing {role} path (the {other} path of this '
                        f"pair is {getattr(pair, f'{other}_path')!r}).")
        return problems

    def _has_bad_path(self, pair: _Pair) -> bool:
        return any((pair.name, role) in self._bad_paths
                   for role in ('student', 'teacher'))

    def _valid_paths(self,
                     role: str,
                     teacher: Optional[str] = None) -> List[str]:
        return [
            getattr(p, f'{role}_path') for p in self.distill_pairs.values()
            if (p.name, role) not in self._bad_paths and (
                teacher is None or p.teacher_model == teacher)
        ]

    def _bind_connectors(self) -> List[str]:
        """Let connectors that need the models see them (e.g. OFD margins)."""
        problems = []
        for pair in self.distill_pairs.values():
            if self._has_bad_path(pair):
                continue
            for key in ('connector', 'teacher_connector'):
                for m in connectors_of(getattr(pair, key)):
                    if not hasattr(m, 'bind'):
                        continue
                    # connectors that may sit on either side (tokens of a
                    # transformer) are told which one they are on
                    side = dict(
                        role='student' if key == 'connector' else 'teacher')
                    try:
                        m.bind(
                            student=self.student,
                            teacher=self.teachers[pair.teacher_model],
                            student_path=pair.student_path,
                            teacher_path=pair.teacher_path,
                            name=pair.name,
                            **(side if 'role' in inspect.signature(
                                m.bind).parameters else {}))
                    except (KeyError, ValueError) as e:
                        problems.append(str(e.args[0]) if e.args else str(e))
        return problems

    def _check_shape(self, check_input_shape, context):
        """``(shape, where it came from)`` of the dummy input, or None."""
        if check_input_shape is None:
            return None, 'check_input_shape=None'
        if not isinstance(check_input_shape, str):
            return tuple(check_input_shape), 'check_input_shape'
        if check_input_shape != 'auto':
            raise ValueError(
                "FeatureDistiller: check_input_shape must be 'auto', None "
                f'or a shape (1, 3, H, W), got {check_input_shape!r}')
        found = input_size_from_config(context)
        (h, w), source = found or ((DEFAULT_CHECK_SIDE, DEFAULT_CHECK_SIDE),
                                   'default size')
        side = min_input_side(self.student, *self.teachers.values())
        if min(h, w) < side:
            scale = side / min(h, w)
            h, w = (32 * -(-int(v * scale) // 32) for v in (h, w))
            source += f', enlarged to one attention window ({side} px)'
        return (1, 3, h, w), source

    def _run_models(self, inputs: Tensor) -> Tuple[dict, Dict[str, dict]]:
        """Record the student's and every teacher's features on ``inputs``
        (eval, no grad): ``(s_out, {teacher name: t_out})``."""
        t_outs = {}
        with torch.no_grad():
            with self.student_recorder.record(stop_after={}) as s_out:
                self.student(inputs, None, mode='tensor')
            for name in self.teachers:
                t_outs[name] = self._run_teacher(inputs, None, {}, name)
        return s_out, t_outs

    def _dry_run(self, shape: Tuple[int, ...], source: str = '') -> list:
        """Run both models on a dummy input, fill connector widths and
        check every pair; return the problems found."""
        was_training = self.training
        self.eval()
        g = torch.Generator().manual_seed(0)
        inputs = torch.rand(*shape, generator=g)
        self._dummy_inputs = inputs
        try:
            s_out, t_outs = self._run_models(inputs)
        except Exception as e:  # host model needs real data samples
            self.train(was_training)
            self._check_skipped = (
                f'the models did not run on a dummy input of shape {shape} '
                f'({source}): {type(e).__name__}: {e}')
            MMLogger.get_current_instance().warning(
                'FeatureDistiller: no build-time check of the distilled '
                f'pairs: {self._check_skipped}. The pairs are checked at the '
                'first training step instead. To check them now, give '
                'check_input_shape=(1, 3, H, W) with a size the models '
                'accept (e.g. the training crop size).')
            return []
        try:  # in eval mode: BN connectors must not learn from the dummy
            problems = self._fill_channels(s_out, t_outs)
            with torch.no_grad():
                problems += self._check_pairs(s_out, t_outs, raise_now=False)
        finally:
            self.train(was_training)
        return problems

    def _teacher_trace(self,
                       shape: Sequence[int],
                       teacher: Optional[str] = None) -> tuple:
        """A dummy teacher pass and the recorded paths, from which
        :class:`TeacherPrecision` learns which BN follows which conv."""
        # its own generator: converting must not change seeded runs
        inputs = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        stop = {} if self.truncate_teacher else None
        teacher = self._teacher_name(teacher)
        recorder = self.teacher_recorders[teacher]

        def trace() -> dict:
            with torch.no_grad(), recorder.record(stop) as out:
                self.teachers[teacher](inputs, None, mode='tensor')
            return out

        specs = recorder.specs.values()
        return trace, ({p
                        for p, kind, _ in specs if kind == 'output'},
                       {p
                        for p, kind, _ in specs if kind == 'input'})

    def _fill_channels(self, s_out: dict, t_outs: Dict[str,
                                                       dict]) -> List[str]:
        """Build the connectors left ``'auto'`` from the recorded widths."""
        todo = []
        problems = []
        for pair in self.distill_pairs.values():
            sp, tp = pair.student_path, pair.teacher_path
            t_out = t_outs[pair.teacher_model]
            if not pair.unbuilt() or sp not in s_out or tp not in t_out:
                continue
            s, t = unwrap_single(s_out[sp], t_out[tp])
            where = (f"distill['{pair.name}']: student '{sp}' {shapes(s)}, "
                     f"teacher '{tp}' {shapes(t)}")
            keys = {key for key, _ in pair.unbuilt()}
            if 'teacher_connector' in keys:
                problems.append(
                    f'{where}: the teacher_connector needs explicit '
                    'in_channels and out_channels (only the student-side '
                    'connector maps student to teacher channels).')
            if 'connector' not in keys:
                continue
            levels = self._levels(pair, s, self._teacher_side(pair, t))
            if isinstance(levels, str):
                problems.append(f'{where}: {levels}')
                continue
            for c, (cin, cout) in zip(connectors_of(pair.connector), levels):
                if isinstance(c, ChannelConnector) and not c.is_built:
                    todo.append((c, cin, cout, where))
        if todo:
            state = torch.get_rng_state()
            if self._rng_at_pairs is not None:
                torch.set_rng_state(self._rng_at_pairs)
            try:
                for c, cin, cout, where in todo:
                    try:
                        c.build(cin, cout)
                        # new layers start in training mode; the check must
                        # not move BN statistics with the dummy input
                        c.train(self.training)
                    except ValueError as e:
                        problems.append(f'{where}: {e}')
            finally:
                if not problems:
                    state = torch.get_rng_state()
                torch.set_rng_state(state)
        return problems

    def _teacher_side(self, pair: _Pair, t):
        """The teacher feature after its connector, when it can be run."""
        try:
            return pair._connect(pair.teacher_connector, t)
        except Exception:
            return t

    @staticmethod
    def _levels(pair: _Pair, s, t):
        """``[(student channels, teacher channels)]`` per connector, or
        the reason why the widths cannot be read."""
        s_list, t_list = as_tensor_list(s), as_tensor_list(t)
        conns = connectors_of(pair.connector)
        if any(f.dim() < 2 for f in s_list + t_list):
            return 'a feature without a channel dimension'
        if isinstance(pair.connector, nn.ModuleList):
            if len(conns) != len(s_list) or len(conns) != len(t_list):
                return (f'{len(conns)} connectors for {len(s_list)} student '
                        f'and {len(t_list)} teacher feature levels; give one '
                        'connector per level, or a single one shared by all')
            return [(a.shape[1], b.shape[1]) for a, b in zip(s_list, t_list)]
        s_ch = {f.shape[1] for f in s_list}
        t_ch = {f.shape[1] for f in t_list}
        if len(s_ch) != 1 or len(t_ch) != 1:
            return ('the feature levels have different channel counts '
                    f'(student {sorted(s_ch)}, teacher {sorted(t_ch)}), so '
                    'one shared connector cannot fit them all; give a list '
                    'of connectors, one per level')
        return [(s_ch.pop(), t_ch.pop())]

    def _unbuilt_problems(self, shape, source) -> List[str]:
        """Connectors that still miss widths (the check could not run)."""
        problems = []
        for pair in self.distill_pairs.values():
            if self._has_bad_path(pair):
                continue
            for key, conn in pair.unbuilt():
                if key == 'teacher_connector':
                    continue  # reported by _fill_channels
                why = (
                    self._check_skipped
                    or f'the build-time check is off ({source})')
                if shape is not None and not self._check_skipped:
                    continue  # reported with the pair's shapes
                problems.append(
                    f"distill['{pair.name}'].{key}: {type(conn).__name__} "
                    'takes in_channels / out_channels from the build-time '
                    f'dry run, which did not happen: {why}. Fix: give '
                    'check_input_shape=(1, 3, H, W) that both models '
                    'accept, or in_channels= and out_channels= in the '
                    'connector.')
        return problems

    def _raise(self, problems: List[str], shape, source) -> None:
        if not problems:
            return
        where = (f' (dry run on a {shape} input from {source})'
                 if shape is not None and not self._check_skipped else '')
        lines = '\n'.join(f'  {i + 1}. {p}' for i, p in enumerate(problems))
        raise DistillCheckError(
            f'FeatureDistiller: {len(problems)} problem(s) with `distill`'
            f'{where}:\n{lines}')

    def _check_pairs(self,
                     s_out: dict,
                     t_outs: Dict[str, dict],
                     raise_now: bool = True) -> List[str]:
        """Check every pair on recorded features; collect every problem.

        Args:
            s_out (dict): Student features by path (a recorder's output).
            t_outs (dict): Per teacher name, its features by path.
            raise_now (bool): Raise :class:`DistillCheckError` listing the
                problems (the first training step); False returns them.
        """
        problems = []
        for pair in self.distill_pairs.values():
            if self._has_bad_path(pair):
                continue
            problems += self._check_pair(pair, s_out,
                                         t_outs[pair.teacher_model])
        if not problems:
            self._checked = True
        elif raise_now:
            self._raise(problems, None, '')
        return problems

    def _check_pair(self, pair: _Pair, s_out: dict, t_out: dict) -> list:
        sp, tp = pair.student_path, pair.teacher_path
        where = f"distill['{pair.name}']"
        t_role = self._teacher_role(pair.teacher_model)
        missing = [(role, path) for role, out, path in (('student', s_out, sp),
                                                        (t_role, t_out, tp))
                   if path not in out]
        if missing:
            got = {
                'student': shapes(s_out[sp]) if sp in s_out else 'no call',
                'teacher': shapes(t_out[tp]) if tp in t_out else 'no call'
            }
            return [
                f"{where}: student '{sp}' {got['student']}, teacher '{tp}' "
                f"{got['teacher']}: the {role} module {path!r} was not "
                'called in the forward pass, so it has no feature to '
                'distill. Fix: choose a module on the forward path (before '
                'the heads: the check runs the models without data '
                'samples).' for role, path in missing
            ]
        if pair.unbuilt():  # reported when its widths were filled in
            return []
        s, t = unwrap_single(s_out[sp], t_out[tp])
        desc = (f"{where}: student '{sp}' {shapes(s)}, teacher '{tp}' "
                f'{shapes(t)}')
        conns = connectors_of(pair.connector)
        needs_map = any(isinstance(c, ChannelConnector) for c in conns)
        pooled = [(role, path, feat)
                  for role, path, feat in (('student', sp, s), ('teacher', tp,
                                                                t))
                  if is_pooled(feat) and (
                      needs_map or is_spatial(t if role == 'student' else s))]
        if pooled:
            return [
                self._pooled_problem(desc, *p, teacher=pair.teacher_model)
                for p in pooled
            ]
        problems = []
        for c in conns:
            in_ch = getattr(c, 'in_channels', None)
            if isinstance(in_ch, int):
                for f in as_tensor_list(s):
                    if f.dim() >= 2 and f.shape[1] != in_ch:
                        problems.append(
                            f'{desc}: connector {type(c).__name__} has '
                            f"in_channels={in_ch} but the student feature "
                            f"'{sp}' has {f.shape[1]} channels (shape "
                            f'{tuple(f.shape)}). Fix: set in_channels='
                            f"{f.shape[1]}, or leave it out ('auto').")
                        break
            out_ch = getattr(c, 'out_channels', None)
            if isinstance(out_ch, int) and pair.teacher_connector is None:
                for f in as_tensor_list(t):
                    if f.dim() >= 2 and f.shape[1] != out_ch:
                        problems.append(
                            f'{desc}: connector {type(c).__name__} has '
                            f"out_channels={out_ch} but the teacher feature "
                            f"'{tp}' has {f.shape[1]} channels (shape "
                            f'{tuple(f.shape)}). Fix: set out_channels='
                            f"{f.shape[1]}, or leave it out ('auto').")
                        break
        if problems:
            return problems
        try:
            pair(s, t)
        except (ValueError, RuntimeError) as e:
            fix = pair.align_hint(s, t)
            if fix:
                e = str(e).rstrip('.')
            elif not conns and shapes(s) != shapes(t):
                fix = (' Fix: add a connector, e.g. connector=dict('
                       "type='ChannelWiseTransform') (widths are filled in), "
                       'or pick modules whose outputs have the same shape.')
            elif 'Fix:' not in str(e):
                fix = (' Fix: pick module paths whose features this loss '
                       'can compare, or add / change the connector.')
            return [f'{desc}: {e}{fix}']
        except Exception as e:  # a user connector or loss: any other error
            raise _with_context(e, desc) from e
        return []

    def _pooled_problem(self,
                        desc: str,
                        role: str,
                        path: str,
                        feat,
                        teacher: str = SINGLE) -> str:
        """A pooled ``(N, C)`` feature where a spatial one is needed."""
        model = self.student if role == 'student' else self.teachers[teacher]
        inputs = getattr(self, '_dummy_inputs', None)
        spatial = None
        if inputs is not None:
            x = inputs if role == 'student' else self._teacher_inputs(
                inputs, teacher)
            spatial = last_spatial_module(
                model,
                parse_path(path)[0], lambda: model(x, None, mode='tensor'))
        fix = (f"Fix: distill the last spatial module before the pooling, "
               f"{role}='{spatial}'" if spatial else
               'Fix: distill a module before the pooling (print the model '
               'to find it)')
        return (f'{desc}: the {role} feature {shapes(feat)} is pooled '
                '(N, C), but the pair needs a spatial (N, C, H, W) map (the '
                'connector or the other side is spatial). '
                f"{fix}, or 'backbone.stage(-1)' for a known backbone.")

    # ------------------------------------------------------------------ #
    # nn.Module plumbing for the non-child teacher
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for name, teacher in self.teachers.items():
            teacher._apply(fn, *args, **kwargs)
            # .to(device) / .float() keep the teacher's own dtype and layout
            self.teacher_precisions[name].restore(teacher)
        return self

    def train(self, mode: bool = True) -> 'FeatureDistiller':
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.eval()
        return self

    def _teacher_name(self, teacher: Optional[str]) -> str:
        """``teacher``, or the first teacher's name when it is ``None``."""
        return teacher if teacher is not None else next(iter(self.teachers))

    def _teacher_inputs(self,
                        inputs: Tensor,
                        teacher: Optional[str] = None) -> Tensor:
        """The student's preprocessed batch in a teacher's normalisation
        (default: the first teacher's)."""
        name = self._teacher_name(teacher)
        if name not in self.teacher_inputs or not isinstance(inputs, Tensor):
            return inputs
        return self.teacher_inputs[name](inputs)

    # ------------------------------------------------------------------ #
    # forward
    def forward(self,
                inputs: Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """``loss``: student losses plus ``loss_distill_*``; other modes run
        the student alone."""
        if mode == 'loss':
            if not self.distill_enabled:  # DistillStopHook
                return self._check_finite(
                    self._student_loss(inputs, data_samples))
            return self._check_finite(self.loss(inputs, data_samples))
        return self.student(inputs, data_samples, mode=mode)

    def _zero_loss(self, params) -> Tensor:
        """An exact zero whose gradient reaches ``params`` (zeros too)."""
        zero = next(self.student.parameters()).new_zeros(())
        for p in params:
            if p.requires_grad:
                zero = zero + p.sum() * 0.
        return zero

    def _student_loss(self, inputs: Tensor,
                      data_samples: Optional[list]) -> dict:
        """Task losses only: the teacher does not run; every
        ``loss_distill_<name>`` is a zero connected to its connectors, so
        DDP still sees all parameters used."""
        losses = rename_reserved_losses(
            self.student(inputs, data_samples, mode='loss'))
        for name, pair in self.distill_pairs.items():
            losses[f'loss_distill_{name}'] = self._zero_loss(pair.parameters())
        return losses

    def _check_finite(self, losses: dict) -> dict:
        """Stop on (or zero) NaN / inf losses before ``backward``.

        See ``nonfinite_policy`` and ``mmkd_channel.DistillNaNHook``.
        """
        if self.nonfinite_policy == 'ignore':
            return losses
        terms = {}
        for key, value in losses.items():
            if 'loss' not in key:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            values = [v for v in values if isinstance(v, Tensor)]
            if values:
                terms[key] = values
        flags = [torch.isfinite(v).all() for vs in terms.values() for v in vs]
        all_finite = bool(torch.stack(flags).all()) if flags else True
        bad = [] if all_finite else [
            k for k, vs in terms.items()
            if not all(bool(torch.isfinite(v).all()) for v in vs)
        ]
        self.nonfinite_terms = bad
        if self.nonfinite_policy == 'skip':
            from mmengine.dist import all_reduce, get_world_size
            flag = torch.tensor(float(bool(bad)))
            if get_world_size() > 1:  # every rank skips the same steps
                all_reduce(flag)
            if flag.item() > 0:
                self.skipped_step = True
                zero = self._zero_loss(self.parameters())
                return {
                    k: (zero if k in terms else v)
                    for k, v in losses.items()
                }
            return losses
        if bad:
            values = ', '.join(
                f'{k}={[float(v.detach().float().sum()) for v in terms[k]]}'
                for k in bad)
            raise FloatingPointError(
                f'FeatureDistiller: loss term(s) {bad} are not finite '
                f'({values}). The run stops before backward and the '
                'optimizer step, so the weights and the last checkpoint '
                'are the last good ones. Lower the loss_weight or the '
                'learning rate, check the teacher checkpoint, or skip such '
                "steps: custom_hooks=[dict(type='mmkd_channel."
                "DistillNaNHook', skip=True)].")
        return losses

    def loss(self, inputs: Tensor, data_samples: Optional[list]) -> dict:
        """Student task losses plus one ``loss_distill_<name>`` per pair."""
        with self.student_recorder.record() as s_out:
            losses = self.student(inputs, data_samples, mode='loss')
        losses = rename_reserved_losses(losses)  # see loss_keys.py
        t_outs = {
            name:
            self.teacher_features(
                inputs,
                data_samples,
                stop_after=s_out['__calls__'],
                teacher=name)
            for name in self.teachers
        }
        if not self._checked:
            with torch.no_grad():
                self._check_pairs(s_out, t_outs)
        for name, pair in self.distill_pairs.items():
            key = f'loss_distill_{name}'
            if key in losses:
                raise KeyError(f'{key} is already a loss of the student')
            losses[key] = pair(s_out[pair.student_path],
                               t_outs[pair.teacher_model][pair.teacher_path],
                               data_samples)  # labels for SAKD
        self.loss_scale.update(losses, self.distill_pairs)
        return losses

    def teacher_features(self,
                         inputs: Tensor,
                         data_samples=None,
                         stop_after: Optional[Dict[str, int]] = None,
                         teacher: Optional[str] = None) -> dict:
        """Run a teacher (no grad) and return its recorded features.

        Args:
            stop_after (dict, optional): Calls expected per *student* path;
                the teacher stops once each of its paths was called as often
                as its paired student module (when ``truncate_teacher``).
            teacher (str, optional): Which teacher (a key of
                ``self.teachers``); default: the first.
        """
        name = self._teacher_name(teacher)
        model = self.teachers[name]
        expected = None
        if self.truncate_teacher:
            expected = {}
            for pair in self.distill_pairs.values():
                if pair.teacher_model != name:
                    continue
                n = (stop_after or {}).get(pair.student_path, 1)
                expected[pair.teacher_path] = max(
                    expected.get(pair.teacher_path, 1), n)
        model.eval()
        return self._run_teacher(inputs, data_samples, expected, name)

    def _run_teacher(self,
                     inputs,
                     data_samples,
                     stop_after: Optional[Dict[str, int]],
                     teacher: Optional[str] = None) -> dict:
        """A teacher's (default: the first's) recorded features, in the
        student's dtype."""
        name = self._teacher_name(teacher)
        precision = self.teacher_precisions[name]
        device = inputs.device.type if isinstance(inputs, Tensor) else 'cpu'
        with torch.no_grad(), precision.forward_context(device), \
                self.teacher_recorders[name].record(
                    stop_after=stop_after) as t_out:
            self.teachers[name](
                precision.cast_inputs(self._teacher_inputs(inputs, name)),
                data_samples,
                mode='tensor')
        dtype = next(self.student.parameters(), torch.empty(())).dtype
        return precision.cast_features(t_out, dtype)
