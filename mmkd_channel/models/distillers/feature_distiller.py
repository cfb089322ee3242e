"""FeatureDistiller: a student, a frozen teacher and feature losses."""
import copy
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
from ..losses.base import as_tensor_list
from .recorder import FeatureRecorder
from .teacher_precision import TeacherPrecision

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

    def __init__(self, name: str, student: str, teacher: str, connector,
                 teacher_connector, loss) -> None:
        super().__init__()
        self.name = name
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
    def _connect(connector, feat):
        if connector is None:
            return feat
        if isinstance(feat, (tuple, list)):
            if isinstance(connector, nn.ModuleList):
                if len(connector) != len(feat):
                    raise ValueError(
                        f'{len(connector)} connectors for {len(feat)} '
                        'feature levels')
                return tuple(c(f) for c, f in zip(connector, feat))
            return tuple(connector(f) for f in feat)
        if isinstance(connector, nn.ModuleList):
            raise ValueError('a list of connectors needs a tuple of features')
        return connector(feat)

    def forward(self,
                student_feat,
                teacher_feat,
                data_samples: Optional[list] = None) -> Tensor:
        # issue 4: losses whose forward names `data_samples` (SAKD) also get
        # the batch's data samples; every other loss is called as before.
        from ..losses.loss_inputs import call_loss
        s = self._connect(self.connector, student_feat)
        t = self._connect(self.teacher_connector, teacher_feat)
        return call_loss(self.loss, s, t, data_samples)


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
            per feature level. Each term is returned as
            ``loss_distill_<name>``.
        truncate_teacher (bool): Stop the teacher's forward pass once all
            recorded teacher modules produced their outputs. Default True.
        check_input_shape (tuple, optional): Shape of a dummy input used to
            check, when the distiller is built, that every distilled pair
            fits (module paths, channels, spatial sizes). ``None`` skips
            the check (it then happens at the first training step).
        data_preprocessor (dict, optional): Defaults to the student's.
        teacher_trainable (bool): Must be False (the default): the teacher
            is frozen. True raises ``NotImplementedError``.
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
                 teacher: ModelCfg,
                 teacher_ckpt: Optional[str] = None,
                 distill: Optional[dict] = None,
                 truncate_teacher: bool = True,
                 check_input_shape: Optional[Sequence[int]] = (1, 3, 64, 64),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 teacher_trainable: bool = False,
                 teacher_dtype: str = 'fp32',
                 teacher_channels_last: bool = False) -> None:
        if teacher_trainable:  # issue 5
            raise NotImplementedError(
                'FeatureDistiller: teacher_trainable=True is not supported; '
                'the teacher is frozen (no grad, eval mode, out of the '
                'optimizer and checkpoints). Set teacher_trainable=False.')
        specs = self._normalise_distill(distill)
        precision = TeacherPrecision(teacher_dtype, teacher_channels_last)
        student_model = build_host_model(student, 'student')
        if data_preprocessor is None:
            data_preprocessor = getattr(student_model, 'data_preprocessor',
                                        None)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = student_model
        teacher_model = build_host_model(teacher, 'teacher')
        if teacher_ckpt is not None:
            load_teacher_checkpoint(teacher_model, teacher_ckpt)
        else:
            MMLogger.get_current_instance().warning(
                'FeatureDistiller: teacher_ckpt is None, the teacher keeps '
                'its random initialisation.')
        teacher_model.eval()
        teacher_model.requires_grad_(False)
        # Not a child module: out of state_dict, optimizer and DDP.
        object.__setattr__(self, 'teacher', teacher_model)
        self.teacher_ckpt = teacher_ckpt
        self.truncate_teacher = truncate_teacher

        self.distill_pairs = nn.ModuleDict({
            name: _Pair(name, **spec)
            for name, spec in specs.items()
        })
        self.student_recorder = FeatureRecorder(
            self.student,
            [p.student_path for p in self.distill_pairs.values()], 'student')
        self.teacher_recorder = FeatureRecorder(
            self.teacher,
            [p.teacher_path for p in self.distill_pairs.values()], 'teacher')
        self._bind_connectors()
        self.teacher_precision = precision
        precision.convert(
            self.teacher,
            *self._teacher_trace(check_input_shape or (1, 3, 64, 64)))
        self._checked = False
        if check_input_shape is not None:
            self._dry_run(tuple(check_input_shape))

    # ------------------------------------------------------------------ #
    # construction helpers
    @staticmethod
    def _normalise_distill(distill) -> Dict[str, dict]:
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
            'student', 'teacher', 'connector', 'teacher_connector', 'loss'
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
                        m.bind(
                            student=self.student,
                            teacher=self.teacher,
                            student_path=pair.student_path,
                            teacher_path=pair.teacher_path,
                            name=pair.name)

    def _dry_run(self, shape: Tuple[int, ...]) -> None:
        """Run both models on a dummy input and check every pair fits."""
        was_training = self.training
        self.eval()
        inputs = torch.rand(*shape)
        try:
            with torch.no_grad(), \
                    self.student_recorder.record(stop_after={}) as s_out:
                self.student(inputs, None, mode='tensor')
            feats = [s_out, self._run_teacher(inputs, None, {})]
        except Exception as e:  # host model needs real data samples
            self.train(was_training)
            MMLogger.get_current_instance().info(
                'FeatureDistiller: no build-time check on a dummy input '
                f'({type(e).__name__}: {e}); pairs are checked at the first '
                'training step.')
            return
        try:  # in eval mode: BN connectors must not learn from the dummy
            with torch.no_grad():
                self._check_pairs(*feats)
        finally:
            self.train(was_training)

    def _teacher_trace(self, shape: Sequence[int]) -> tuple:
        """A dummy teacher pass and the recorded paths, from which
        :class:`TeacherPrecision` learns which BN follows which conv."""
        # its own generator: converting must not change seeded runs
        inputs = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        stop = {} if self.truncate_teacher else None

        def trace() -> dict:
            with torch.no_grad(), self.teacher_recorder.record(stop) as out:
                self.teacher(inputs, None, mode='tensor')
            return out

        specs = self.teacher_recorder.specs.values()
        return trace, ({p
                        for p, kind, _ in specs if kind == 'output'},
                       {p
                        for p, kind, _ in specs if kind == 'input'})

    def _check_pairs(self, s_out: dict, t_out: dict) -> None:
        for pair in self.distill_pairs.values():
            sp, tp = pair.student_path, pair.teacher_path
            where = f"distill['{pair.name}']"
            for role, out, path in (('student', s_out, sp), ('teacher', t_out,
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
                raise ValueError(f'{desc}: {e}') from None
        self._checked = True

    # ------------------------------------------------------------------ #
    # nn.Module plumbing for the non-child teacher
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        # .to(device) / .float() keep the teacher's own dtype and layout
        self.teacher_precision.restore(self.teacher)
        return self

    def train(self, mode: bool = True) -> 'FeatureDistiller':
        super().train(mode)
        self.teacher.eval()
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
        t_out = self.teacher_features(
            inputs, data_samples, stop_after=s_out['__calls__'])
        if not self._checked:
            with torch.no_grad():
                self._check_pairs(s_out, t_out)
        for name, pair in self.distill_pairs.items():
            key = f'loss_distill_{name}'
            if key in losses:
                raise KeyError(f'{key} is already a loss of the student')
            losses[key] = pair(s_out[pair.student_path],
                               t_out[pair.teacher_path],
                               data_samples)  # issue 4: labels for SAKD
        return losses

    def teacher_features(self,
                         inputs: Tensor,
                         data_samples=None,
                         stop_after: Optional[Dict[str, int]] = None) -> dict:
        """Run the teacher (no grad) and return its recorded features.

        Args:
            stop_after (dict, optional): Calls expected per *student* path;
                the teacher stops once each teacher path was called as often
                as its paired student module (when ``truncate_teacher``).
        """
        expected = None
        if self.truncate_teacher:
            expected = {}
            for pair in self.distill_pairs.values():
                n = (stop_after or {}).get(pair.student_path, 1)
                expected[pair.teacher_path] = max(
                    expected.get(pair.teacher_path, 1), n)
        self.teacher.eval()
        return self._run_teacher(inputs, data_samples, expected)

    def _run_teacher(self, inputs, data_samples,
                     stop_after: Optional[Dict[str, int]]) -> dict:
        """The teacher's recorded features, in the student's dtype."""
        precision = self.teacher_precision
        device = inputs.device.type if isinstance(inputs, Tensor) else 'cpu'
        with torch.no_grad(), precision.forward_context(device), \
                self.teacher_recorder.record(stop_after=stop_after) as t_out:
            self.teacher(
                precision.cast_inputs(inputs), data_samples, mode='tensor')
        dtype = next(self.student.parameters(), torch.empty(())).dtype
        return precision.cast_features(t_out, dtype)
