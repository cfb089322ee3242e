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
from ..connectors.spatial_align import (align_hint, call_connector,
                                        spatial_sizes)
from ..losses.base import as_tensor_list
from .recorder import FeatureRecorder
from .teachers import (SINGLE, check_all_used, normalise_teachers,
                       resolve_teacher_model)

ModelCfg = Union[str, dict, ConfigDict]


def build_host_model(cfg: ModelCfg, role: str) -> nn.Module:
    """Build an mmdet / mmseg / mmpretrain model from a dict or config path.

    Args:
        cfg (str | dict): A model dict (``type`` in the host's scope, or with
            ``_scope_``), or the path of a host config file, local or in the
            ``mmdet::faster_rcnn/...py`` form; its ``model`` is built in its
            ``default_scope``.
        role (str): ``'student'`` or ``'teacher'`` (for messages).
    """
    if isinstance(cfg, str):
        path = cfg
        try:
            full_path = resolve_config_path(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(f'{role}: config {e}') from None
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
    elif isinstance(cfg, dict):
        cfg = copy.deepcopy(cfg)
    else:
        raise TypeError(f'{role} must be a model dict or a config path, got '
                        f'{type(cfg).__name__}')
    if 'type' not in cfg:
        raise KeyError(f'{role}: the model dict has no `type`.')
    type_name = cfg['type']
    if isinstance(type_name, str) and '.' in type_name and ('_scope_'
                                                            not in cfg):
        # 'mmpretrain.ImageClassifier' as _scope_: the host's own nested
        # builds (its default 'ClsDataPreprocessor') then look in its
        # registry, not in the default scope of the run (mmdet, mmengine)
        cfg['_scope_'], cfg['type'] = type_name.split('.', 1)
    return MODELS.build(cfg)


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

    def forward(self,
                student_feat,
                teacher_feat,
                data_samples: Optional[list] = None) -> Tensor:
        # Losses whose forward names `data_samples` (SAKD) also get the
        # batch's data samples; every other loss is called as before.
        from ..losses.loss_inputs import call_loss

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


def _shapes(feat) -> list:
    return [tuple(f.shape) for f in as_tensor_list(feat)]


@MODELS.register_module()
class FeatureDistiller(BaseModel):
    """Train ``student`` with its task losses plus feature distillation.

    The teacher is frozen: ``requires_grad=False``, always in eval mode,
    run under ``no_grad``, never in the optimizer, and kept out of
    ``state_dict`` so checkpoints stay student-sized (it is not a child
    module; it is moved between devices with the distiller). Features are
    recorded with forward hooks at dotted module paths; ``predict`` and
    ``tensor`` modes run the student alone.

    Args:
        student (dict | str): Student model dict (usually ``_base_.model``
            of the host config) or host config path.
        teacher (dict | str): Teacher model dict or host config path, e.g.
            ``'mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py'``.
        teacher_ckpt (str, optional): Teacher checkpoint, local path or URL,
            loaded with ``torch.load(weights_only=True)`` and an allowlist.
            ``None`` keeps a randomly initialised teacher (tests only).
        distill (dict): ``name -> dict(student=PATH, teacher=PATH,
            connector=CFG, teacher_connector=CFG, loss=CFG)``. ``teacher``
            defaults to the student path. ``connector`` may be a list, one
            per feature level. With several teachers each term names its
            own with ``teacher_model='<name>'``. Each term is returned as
            ``loss_distill_<name>``.
        truncate_teacher (bool): Stop each teacher's forward pass once all
            its recorded modules produced their outputs. Default True.
        check_input_shape (tuple, optional): Shape of a dummy input used to
            check, when the distiller is built, that every distilled pair
            fits (module paths, channels, spatial sizes). ``None`` skips
            the check (it then happens at the first training step).
        data_preprocessor (dict, optional): Defaults to the student's.
        teacher_trainable (bool): Must be False (the default): the teacher
            is frozen. True raises ``NotImplementedError``.
        teachers (dict, optional): Several teachers instead of ``teacher``
            / ``teacher_ckpt``: ``name -> dict(config=..., ckpt=...)``.
            Each is frozen, kept out of the optimizer and checkpoints, run
            only as far as its own recorded modules, and available as
            ``self.teachers[name]`` (``self.teacher`` is the first).

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

    # issue 5: switched by the hooks of mmkd_channel.engine
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
                 check_input_shape: Optional[Sequence[int]] = (1, 3, 64, 64),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 teacher_trainable: bool = False,
                 teachers: Optional[dict] = None) -> None:
        if teacher_trainable:  # issue 5
            raise NotImplementedError(
                'FeatureDistiller: teacher_trainable=True is not supported; '
                'the teacher is frozen (no grad, eval mode, out of the '
                'optimizer and checkpoints). Set teacher_trainable=False.')
        teacher_cfgs = normalise_teachers(teacher, teacher_ckpt, teachers)
        specs = self._normalise_distill(distill, list(teacher_cfgs))
        check_all_used(
            list(teacher_cfgs), [s['teacher_model'] for s in specs.values()])
        student_model = build_host_model(student, 'student')
        if data_preprocessor is None:
            data_preprocessor = getattr(student_model, 'data_preprocessor',
                                        None)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = student_model
        built = {
            name: self._build_teacher(name, **cfg)
            for name, cfg in teacher_cfgs.items()
        }
        # Not child modules: out of state_dict, optimizer and DDP.
        object.__setattr__(self, 'teachers', built)
        object.__setattr__(self, 'teacher', next(iter(built.values())))
        self.teacher_ckpts = {n: c['ckpt'] for n, c in teacher_cfgs.items()}
        self.teacher_ckpt = next(iter(self.teacher_ckpts.values()))
        self.truncate_teacher = truncate_teacher

        self.distill_pairs = nn.ModuleDict({
            name: _Pair(name, **spec)
            for name, spec in specs.items()
        })
        self.student_recorder = FeatureRecorder(
            self.student,
            [p.student_path for p in self.distill_pairs.values()], 'student')
        self.teacher_recorders = {
            name:
            FeatureRecorder(model, [
                p.teacher_path
                for p in self.distill_pairs.values() if p.teacher_model == name
            ], self._teacher_role(name))
            for name, model in self.teachers.items()
        }
        self.teacher_recorder = next(iter(self.teacher_recorders.values()))
        self._bind_connectors()
        self._checked = False
        if check_input_shape is not None:
            self._dry_run(tuple(check_input_shape))

    # ------------------------------------------------------------------ #
    # construction helpers
    def _teacher_role(self, name: str) -> str:
        """``'teacher'``, or ``"teacher 'det'"`` with several (messages)."""
        return 'teacher' if len(self.teachers) == 1 else f'teacher {name!r}'

    def _build_teacher(self, name: str, config: ModelCfg,
                       ckpt: Optional[str]) -> nn.Module:
        """Build, load and freeze one teacher."""
        role = 'teacher' if name == SINGLE else f'teachers[{name!r}]'
        model = build_host_model(config, role)
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

    def _bind_connectors(self) -> None:
        """Let connectors that need the models see them (e.g. OFD margins)."""
        for pair in self.distill_pairs.values():
            for key in ('connector', 'teacher_connector'):
                conn = getattr(pair, key)
                mods = conn if isinstance(conn, nn.ModuleList) else [conn]
                for m in mods:
                    if m is not None and hasattr(m, 'bind'):
                        # connectors that may sit on either side (tokens
                        # of a transformer) are told which one they are on
                        side = dict(role='student' if key ==
                                    'connector' else 'teacher')
                        m.bind(
                            student=self.student,
                            teacher=self.teachers[pair.teacher_model],
                            student_path=pair.student_path,
                            teacher_path=pair.teacher_path,
                            name=pair.name,
                            **(side if 'role' in inspect.signature(
                                m.bind).parameters else {}))

    def _dry_run(self, shape: Tuple[int, ...]) -> None:
        """Run both models on a dummy input and check every pair fits."""
        was_training = self.training
        self.eval()
        inputs = torch.rand(*shape)
        try:
            with torch.no_grad():
                feats = {}
                runs = [(None, self.student, self.student_recorder)
                        ] + [(name, model, self.teacher_recorders[name])
                             for name, model in self.teachers.items()]
                for name, model, rec in runs:
                    with rec.record(stop_after={}) as out:
                        model(inputs, None, mode='tensor')
                    feats[name] = out
        except Exception as e:  # host model needs real data samples
            self.train(was_training)
            MMLogger.get_current_instance().info(
                'FeatureDistiller: no build-time check on a dummy input '
                f'({type(e).__name__}: {e}); pairs are checked at the first '
                'training step.')
            return
        try:  # in eval mode: BN connectors must not learn from the dummy
            with torch.no_grad():
                self._check_pairs(feats.pop(None), feats)
        finally:
            self.train(was_training)

    def _check_pairs(self, s_out: dict, t_outs: Dict[str, dict]) -> None:
        """Check every pair on recorded features (``t_outs``: per
        teacher)."""
        for pair in self.distill_pairs.values():
            sp, tp = pair.student_path, pair.teacher_path
            t_out = t_outs[pair.teacher_model]
            where = f"distill['{pair.name}']"
            t_role = self._teacher_role(pair.teacher_model)
            for role, out, path in (('student', s_out, sp), (t_role, t_out,
                                                             tp)):
                if path not in out:
                    raise RuntimeError(
                        f'{where}: the {role} module {path!r} was not called '
                        'in the forward pass, so it has no feature to '
                        'distill. Choose a module on the forward path.')
            s, t = s_out[sp], t_out[tp]
            desc = (f"{where}: student '{sp}' {_shapes(s)}, teacher "
                    f"'{tp}' {_shapes(t)}")
            conn = pair.connector
            in_ch = getattr(conn, 'in_channels', None)
            if isinstance(in_ch, int):
                for f in as_tensor_list(s):
                    if f.dim() >= 2 and f.shape[1] != in_ch:
                        raise ValueError(
                            f"{where}: connector {type(conn).__name__} has "
                            f'in_channels={in_ch} but the student feature '
                            f"'{sp}' has {f.shape[1]} channels (shape "
                            f'{tuple(f.shape)}). Set in_channels='
                            f'{f.shape[1]}.')
            out_ch = getattr(conn, 'out_channels', None)
            if isinstance(out_ch, int) and pair.teacher_connector is None:
                for f in as_tensor_list(t):
                    if f.dim() >= 2 and f.shape[1] != out_ch:
                        raise ValueError(
                            f"{where}: connector {type(conn).__name__} has "
                            f'out_channels={out_ch} but the teacher feature '
                            f"'{tp}' has {f.shape[1]} channels (shape "
                            f'{tuple(f.shape)}). Set out_channels='
                            f'{f.shape[1]}.')
            try:
                pair(s, t)
            except (ValueError, RuntimeError) as e:
                hint = pair.align_hint(s, t)
                msg = f'{str(e).rstrip(".")}{hint}' if hint else e
                raise ValueError(f'{desc}: {msg}') from None
        self._checked = True

    # ------------------------------------------------------------------ #
    # nn.Module plumbing for the non-child teacher
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for teacher in self.teachers.values():
            teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'FeatureDistiller':
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.eval()
        return self

    # ------------------------------------------------------------------ #
    # forward
    def forward(self,
                inputs: Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """``loss``: student losses plus ``loss_distill_*``; other modes run
        the student alone."""
        if mode == 'loss':
            if not self.distill_enabled:  # issue 5: DistillStopHook
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
        losses = self.student(inputs, data_samples, mode='loss')
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
                               data_samples)  # issue 4: labels for SAKD
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
        name = teacher if teacher is not None else next(iter(self.teachers))
        model, recorder = self.teachers[name], self.teacher_recorders[name]
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
        with torch.no_grad(), recorder.record(stop_after=expected) as t_out:
            model(inputs, data_samples, mode='tensor')
        return t_out
