"""The distiller's build-time work: normalise ``distill``, resolve module
paths, fill connector widths from a dry run and check every pair, with one
error that lists every problem and its fix."""
import inspect
from collections.abc import Mapping
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn

from ..connectors.base import ChannelConnector
from ..losses.base import as_tensor_list
from .build_context import (DEFAULT_CHECK_SIDE, check_shape_value,
                            input_size_from_config, min_input_side)
from .distill_pair import DistillPair, with_context
from .pair_check import (DistillCheckError, connectors_of, describe_non_tensor,
                         is_pooled, is_spatial, last_spatial_module, shapes,
                         split_shared_connector, unwrap_single)
from .recorder import get_submodule, parse_path, through_last_stage
from .teachers import SINGLE


def _width_problem(desc: str, connector, key: str, role: str, path: str,
                   feat) -> List[str]:
    """A connector's fixed ``in_channels`` / ``out_channels`` against the
    channels of the feature it meets (the first level that differs)."""
    width = getattr(connector, key, None)
    if not isinstance(width, int):
        return []
    for f in as_tensor_list(feat):
        if f.dim() >= 2 and f.shape[1] != width:
            return [
                f'{desc}: connector {type(connector).__name__} has '
                f"{key}={width} but the {role} feature '{path}' has "
                f'{f.shape[1]} channels (shape {tuple(f.shape)}). Fix: set '
                f"{key}={f.shape[1]}, or leave it out ('auto')."
            ]
    return []


class DistillBuildChecks:
    """Mixin of :class:`~.feature_distiller.FeatureDistiller`: everything
    between building the models and the first training step.

    Expects ``student``, ``teachers``, ``distill_pairs``, the recorders
    and ``truncate_teacher`` on ``self``.
    """

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
                    given = spec
                    spec = resolve_stage_path(model, spec)
                    if through_last_stage(model, spec) != spec:
                        spec = through_last_stage(model, spec)
                        MMLogger.get_current_instance().info(
                            f"distill['{pair.name}']: {role} path {given!r} "
                            f'is {spec!r}, in the last head of the cascade '
                            'that has it.')
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

    def _has_bad_path(self, pair: DistillPair) -> bool:
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
            return check_shape_value(check_input_shape), 'check_input_shape'
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
            problems = self._not_features(s_out, t_outs)
            problems += self._fill_channels(s_out, t_outs)
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
            if (not pair.unbuilt() or sp not in s_out or tp not in t_out
                    or self._has_bad_path(pair)):
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
            split_shared_connector(pair, s, self._teacher_side(pair, t))
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

    def _not_features(self, s_out: dict, t_outs: Dict[str, dict]) -> List[str]:
        """Pairs whose recorded module returns more than tensors (Swin's
        ``stages.3`` returns its tokens and their grid ``(7, 7)``); such a
        pair is left out of the other checks."""
        problems = []
        for pair in self.distill_pairs.values():
            sides = (('student', pair.student_path, s_out),
                     ('teacher', pair.teacher_path,
                      t_outs[pair.teacher_model]))
            for role, path, out in sides:
                if path not in out or self._has_bad_path(pair):
                    continue
                found = describe_non_tensor(out[path])
                if found is None:
                    continue
                self._bad_paths.add((pair.name, role))
                # a Hugging Face model returns a dict of outputs
                hint = (" (for logits, its classification layer, e.g. "
                        "'model.classifier' rather than 'model')"
                        if isinstance(out[path], Mapping) else '')
                problems.append(
                    f"distill['{pair.name}']: {role} '{path}' returns "
                    f'{found}, not a feature (a tensor or a tuple of '
                    'tensors). Fix: record a module that returns the '
                    "feature map, e.g. the backbone ('backbone') or "
                    "'backbone.stage(-1)', or a submodule of "
                    f"'{parse_path(path)[0]}'{hint}.")
        return problems

    def _teacher_side(self, pair: DistillPair, t):
        """The teacher feature after its connector, when it can be run."""
        try:
            return pair._connect(pair.teacher_connector, t)
        except Exception:
            return t

    @staticmethod
    def _levels(pair: DistillPair, s, t):
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
        problems = self._not_features(s_out, t_outs)
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

    def _check_pair(self, pair: DistillPair, s_out: dict, t_out: dict) -> list:
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
        s_all, t_all = as_tensor_list(s), as_tensor_list(t)
        per_level = isinstance(
            pair.connector,
            nn.ModuleList) and len(conns) == len(s_all) == len(t_all)
        for i, c in enumerate(conns):
            # a list of connectors maps level i to level i; one is shared
            s_lv = s_all[i:i + 1] if per_level else s_all
            t_lv = t_all[i:i + 1] if per_level else t_all
            problems += _width_problem(desc, c, 'in_channels', 'student', sp,
                                       s_lv)
            if pair.teacher_connector is None:
                problems += _width_problem(desc, c, 'out_channels', 'teacher',
                                           tp, t_lv)
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
            raise with_context(e, desc) from e
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
