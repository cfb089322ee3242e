"""FeatureDistiller: a student, a frozen teacher and feature losses."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch import Tensor, nn

from mmkd_channel.registry import MODELS
from mmkd_channel.utils.checkpoint import load_teacher_checkpoint
from .build_checks import DistillBuildChecks
from .build_context import DEFAULT_CHECK_SIDE, current_config, resolve_distill
from .distill_pair import DistillPair
from .distill_spec import normalise_distill
from .host_api_guard import RefuseHostModelArgs
from .host_models import ModelCfg, build_host_model, host_model_cfg
from .loss_keys import rename_reserved_losses
from .loss_scale import LossScaleMonitor
from .loss_weight_auto import (LossWeightCalibration, check_calibration,
                               split_auto_weights)
from .preprocess import TeacherInputRemap, warn_raw_pixels
from .recorder import FeatureRecorder
from .teacher_precision import TeacherPrecision
from .teachers import SINGLE, check_all_used, normalise_teachers

__all__ = ['FeatureDistiller', 'build_host_model', 'host_model_cfg']


@MODELS.register_module()
class FeatureDistiller(RefuseHostModelArgs, DistillBuildChecks, BaseModel):
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
        loss_weight_calibration (dict, optional): How the terms with
            ``loss=dict(..., loss_weight='auto')`` get their weight:
            ``dict(target_ratio=1.0, iters=10, statistic='median')`` (the
            defaults). Over the first ``iters`` training steps the weight
            is ``target_ratio * median(task loss) / median(raw term)``,
            then frozen and kept in checkpoints (see
            :mod:`~.loss_weight_auto`).

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
                 teacher_channels_last: bool = False,
                 loss_weight_calibration: Optional[dict] = None) -> None:
        if teacher_trainable:
            raise NotImplementedError(
                'FeatureDistiller: teacher_trainable=True is not supported; '
                'the teacher is frozen (no grad, eval mode, out of the '
                'optimizer and checkpoints). Set teacher_trainable=False.')
        context = current_config()
        teacher_cfgs = normalise_teachers(teacher, teacher_ckpt, teachers)
        specs = normalise_distill(
            resolve_distill(distill, context), list(teacher_cfgs))
        check_all_used(
            list(teacher_cfgs), [s['teacher_model'] for s in specs.values()])
        auto_names = split_auto_weights(specs)
        calibration = check_calibration(loss_weight_calibration, auto_names)
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
        for name, model in built.items():
            warn_raw_pixels(model, self._teacher_role(name))
        self.teacher_input = next(iter(remaps.values()))
        # non-persistent buffers: moved with the distiller, not saved
        self.teacher_inputs = nn.ModuleDict({
            n: r
            for n, r in remaps.items() if r is not None
        })
        self.teacher_precisions = precisions
        self.teacher_precision = next(iter(precisions.values()))
        self.loss_scale = LossScaleMonitor()
        self.loss_weight_calibration = (
            LossWeightCalibration(auto_names, **calibration)
            if auto_names else None)
        self._checked = False
        self._check_skipped: Optional[str] = None

        rng_at_pairs = torch.get_rng_state()
        self.distill_pairs = nn.ModuleDict({
            name: DistillPair(name, **spec)
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

    # ------------------------------------------------------------------ #
    # nn.Module plumbing for the non-child teacher
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for name, teacher in self.teachers.items():
            # .to(device) moves it; .float() / .half() keep the dtype and
            # layout of a converted teacher
            self.teacher_precisions[name].apply(teacher, fn, *args, **kwargs)
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
        if self.loss_weight_calibration is not None:
            self.loss_weight_calibration(losses, record=self.training)
        self.loss_scale.update(losses, self.distill_pairs,
                               self._auto_weighted())
        return losses

    def _auto_weighted(self) -> List[str]:
        """Names of the terms weighted by ``loss_weight='auto'``."""
        calibration = self.loss_weight_calibration
        return [] if calibration is None else calibration.names

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
