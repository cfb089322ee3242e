"""The timed phases of the overhead benchmark, on one config's models.

:class:`OverheadBenchmark` builds the distiller, the plain student, their
optimizers and the synthetic batches once, records the features the
losses phase (d) needs, and runs any phase on any batch, timed
(:meth:`~OverheadBenchmark.measure_times` interleaves them). What the
phases are and why they are interleaved is in :mod:`.overhead`, which
turns these timings into the reported results; the class is apart so the
teacher-precision benchmark (:mod:`.precision`) and the memory probe
(:mod:`.memory`) can reuse the phases without the reporting.
"""
import copy
import gc
import time
from typing import Dict, Optional, Sequence

import torch

from .progress import progress
from .synthetic import (DEFAULT_SIZES, host_kind, load_distill_config,
                        make_batch, num_classes_of, set_seg_size)

# The phases timed, in the order of the first iteration. A new phase (e.g.
# another teacher precision) is one entry here, one branch in
# ``OverheadBenchmark.run`` and one column in ``report.format_tables``.
PHASES = ('student', 'teacher', 'teacher_full', 'losses', 'distill')
PHASE_LABELS = {
    'student': '(a) student step',
    'teacher': '(b) teacher fwd',
    'teacher_full': "(b') teacher fwd, no truncation",
    'losses': '(d) distill terms fwd+bwd+step',
    'distill': '(c) distill step',
}
TIMERS = {'wall': time.perf_counter, 'process': time.process_time}
# phases that run every teacher (each teacher's share is timed too)
TEACHER_PHASES = ('teacher', 'teacher_full', 'teacher_lp')


def _leaf(feat):
    """Detached copies of a (tuple of) tensor(s) that require grad."""
    if isinstance(feat, (tuple, list)):
        return type(feat)(_leaf(f) for f in feat)
    return feat.detach().clone().requires_grad_(feat.is_floating_point())


def count_modules_run(model: torch.nn.Module, run) -> tuple:
    """``(run(), number of model's modules entered during it)`` (forward
    pre-hooks: a module counts once it starts, even if a truncated forward
    stops inside it)."""
    entered = set()
    handles = [
        m.register_forward_pre_hook(lambda mod, _: entered.add(id(mod)))
        for m in model.modules()
    ]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
    return out, len(entered)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class OverheadBenchmark:
    """Models, optimizers and batches of one config, and its phases.

    Args:
        config (str): Distillation config (path or ``mmkd_channel::``).
        img_size (tuple, optional): ``(H, W)``; default by host kind
            (:data:`DEFAULT_SIZES`; 32x32 for CIFAR backbones).
        batch_size (int): Images per batch.
        num_batches (int): Distinct batches, cycled through.
        lr (float): Learning rate of both optimizers (see module doc).
        device (str): ``'cpu'`` or ``'cuda'``.
        cfg_options (dict, optional): Config overrides.
        timer (str): ``'wall'`` (``time.perf_counter``) or ``'process'``
            (``time.process_time``: CPU time of this process, summed over
            its threads; less sensitive to other jobs on a shared machine,
            most faithful with one thread).
    """

    def __init__(self,
                 config: str,
                 img_size: Optional[Sequence[int]] = None,
                 batch_size: int = 2,
                 num_batches: int = 4,
                 lr: float = 0.0,
                 device: str = 'cpu',
                 cfg_options: Optional[dict] = None,
                 timer: str = 'wall') -> None:
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import MODELS, init_default_scope
        self.config = config
        self.device = device
        if timer not in TIMERS:
            raise ValueError(f'timer must be one of {list(TIMERS)}, got '
                             f'{timer!r}')
        if timer == 'process' and device.startswith('cuda'):
            raise ValueError("timer='process' measures CPU time; use "
                             "'wall' on CUDA")
        self.clock = TIMERS[timer]
        self.timer = timer
        cfg = load_distill_config(config, cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmengine'))
        student_cfg = copy.deepcopy(cfg.model.student)
        self.kind = self._kind_of(student_cfg)
        if img_size is None:
            img_size = DEFAULT_SIZES[self.kind]
            backbone = str(student_cfg.get('backbone', {}).get('type', ''))
            if 'CIFAR' in backbone.upper():
                img_size = (32, 32)  # CIFAR models at their own size
        self.img_size = tuple(int(v) for v in img_size)
        if self.kind == 'mmseg':
            set_seg_size(cfg, self.img_size)
            student_cfg = copy.deepcopy(cfg.model.student)
        if cfg.get('data_preprocessor') is not None:
            student_cfg.setdefault('data_preprocessor',
                                   copy.deepcopy(cfg.data_preprocessor))
        self.cfg = cfg
        self.distiller = MODELS.build(cfg.model).to(device)
        self.student = MODELS.build(student_cfg).to(device)
        self.student.load_state_dict(self.distiller.student.state_dict())
        self.distiller.train()
        self.student.train()
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        optim_cfg.optimizer.lr = lr
        self.optim_student = build_optim_wrapper(self.student,
                                                 copy.deepcopy(optim_cfg))
        self.optim_distill = build_optim_wrapper(self.distiller,
                                                 copy.deepcopy(optim_cfg))
        # (d) steps the connectors' parameters as (c) does (none for CWD/KD)
        pairs = self.distiller.distill_pairs
        self.optim_terms = None
        if any(p.requires_grad for p in pairs.parameters()):
            self.optim_terms = build_optim_wrapper(pairs, optim_cfg)
        self.truncate = bool(self.distiller.truncate_teacher)
        self.teacher_names = list(self.distiller.teachers)
        # seconds of each teacher inside the last (b) / (b') call
        self.last_split: Dict[str, float] = {}
        self.split_times: Dict[str, Dict[str, list]] = {}

        num_classes = num_classes_of(student_cfg)
        with_mask = bool(getattr(self.student, 'with_mask', False))
        self.batches = [
            make_batch(
                self.kind,
                batch_size,
                self.img_size,
                num_classes,
                seed=i,
                with_mask=with_mask) for i in range(num_batches)
        ]
        self.batch_size = batch_size
        # what the teacher phases get: inputs preprocessed once, and how
        # often the student called each recorded module (for truncation)
        self.preprocessed = []
        self.student_calls = []
        self.features = []  # (student, teacher) recorded features
        for i, batch in enumerate(self.batches):
            data = self.distiller.data_preprocessor(copy.deepcopy(batch), True)
            with torch.no_grad(), \
                    self.distiller.student_recorder.record() as s_out:
                self.distiller.student(
                    data['inputs'],
                    copy.deepcopy(data['data_samples']),
                    mode='loss')
            self.preprocessed.append(data)
            self.student_calls.append(s_out['__calls__'])
            self.features.append((s_out, self.teachers_forward(i, True)))

    @staticmethod
    def _kind_of(student_cfg: dict) -> str:
        from mmengine.registry import MODELS
        with MODELS.switch_scope_and_registry(None) as registry:
            cls = registry.get(student_cfg['type'])
        if cls is None:
            raise KeyError(f"student type {student_cfg['type']!r} is not "
                           'registered in the default scope')
        return host_kind(cls)

    # phases -----------------------------------------------------------
    def teacher_forward(self,
                        i: int,
                        truncate: bool,
                        teacher: Optional[str] = None,
                        distiller=None) -> dict:
        """One teacher's (default: the first's) forward on preprocessed
        batch ``i``, as ``distiller`` (default: :attr:`distiller`) runs
        it."""
        distiller = distiller or self.distiller
        data = self.preprocessed[i]
        old = distiller.truncate_teacher
        distiller.truncate_teacher = truncate
        try:
            return distiller.teacher_features(
                data['inputs'],
                data['data_samples'],
                stop_after=self.student_calls[i],
                teacher=teacher)
        finally:
            distiller.truncate_teacher = old

    def teachers_forward(self,
                         i: int,
                         truncate: bool,
                         distiller=None) -> Dict[str, dict]:
        """Every teacher's forward on batch ``i``, in the distiller's
        order (as its ``loss`` runs them): ``name -> features``. Each
        teacher's seconds go to :attr:`last_split`."""
        out, split = {}, {}
        for name in self.teacher_names:
            t0 = self.clock()
            out[name] = self.teacher_forward(i, truncate, name, distiller)
            split[name] = self.clock() - t0
        self.last_split = split
        return out

    def distill_terms(self, i: int) -> None:
        """Connectors + losses forward and backward on batch ``i``'s
        recorded features (student features as fresh leaves), then the
        connectors' optimizer step."""
        s_out, t_outs = self.features[i]
        samples = self.preprocessed[i]['data_samples']
        total = 0
        for pair in self.distiller.distill_pairs.values():
            s = _leaf(s_out[pair.student_path])
            t = t_outs[pair.teacher_model][pair.teacher_path]
            total = total + pair(s, t, samples)
        total.backward()
        if self.optim_terms is not None:
            self.optim_terms.step()
        self.distiller.distill_pairs.zero_grad(set_to_none=True)

    def prepare(self, phase: str, i: int):
        """Inputs of ``phase`` for batch ``i`` (fresh copies)."""
        if phase in ('student', 'distill'):
            return copy.deepcopy(self.batches[i])
        return i

    def run(self, phase: str, arg) -> None:
        """Run one phase once on what :meth:`prepare` returned."""
        if phase == 'student':
            self.student.train_step(arg, self.optim_student)
        elif phase == 'teacher':
            self.teachers_forward(arg, self.truncate)
        elif phase == 'teacher_full':
            self.teachers_forward(arg, False)
        elif phase == 'losses':
            self.distill_terms(arg)
        elif phase == 'distill':
            self.distiller.train_step(arg, self.optim_distill)
        else:
            raise KeyError(phase)

    def timed(self, phase: str, i: int) -> float:
        """Seconds of one call of ``phase`` on batch ``i``."""
        arg = self.prepare(phase, i)
        gc.disable()  # no collection pause inside the timed call
        try:
            _sync(self.device)
            t0 = self.clock()
            self.run(phase, arg)
            _sync(self.device)
            return self.clock() - t0
        finally:
            gc.enable()

    def truncation_check(self, distiller=None) -> dict:
        """Each teacher of ``distiller`` (default: :attr:`distiller`) with
        and without truncation, on batch 0.

        Returns:
            dict: ``features_identical`` (every teacher records the same
            features either way), ``truncated`` (every teacher entered
            fewer of its modules when truncated) and per teacher under
            ``teachers``: ``features_identical``, ``truncated`` and
            ``modules_run`` (truncated, full) of ``modules_total``.
        """
        from mmkd_channel.models.losses.base import as_tensor_list
        distiller = distiller or self.distiller
        per = {}
        for name in self.teacher_names:
            model = distiller.teachers[name]
            cut, n_cut = count_modules_run(
                model, lambda: self.teacher_forward(0, True, name, distiller))
            full, n_full = count_modules_run(
                model, lambda: self.teacher_forward(0, False, name, distiller))
            same = True
            for p in distiller.teacher_recorders[name].paths:
                a, b = as_tensor_list(cut.get(p, ())), as_tensor_list(
                    full.get(p, ()))
                same &= len(a) == len(b) and all(
                    torch.equal(x, y) for x, y in zip(a, b))
            per[name] = dict(
                features_identical=bool(same),
                truncated=n_cut < n_full,
                modules_run=[n_cut, n_full],
                modules_total=sum(1 for _ in model.modules()))
        return dict(
            features_identical=all(v['features_identical']
                                   for v in per.values()),
            truncated=all(v['truncated'] for v in per.values()),
            teachers=per)

    def measure_times(self,
                      iters: int,
                      warmup: int,
                      phases: Sequence[str] = PHASES,
                      show_progress: bool = False) -> Dict[str, list]:
        """Interleaved timings: ``phase -> [seconds]`` after ``warmup``.

        With ``show_progress`` a progress bar with an ETA counts the
        iterations (each runs every phase once).
        """
        times: Dict[str, list] = {p: [] for p in phases}
        split = {
            p: {
                n: []
                for n in self.teacher_names
            }
            for p in phases if p in TEACHER_PHASES
        }
        n = len(self.batches)
        with progress(warmup + iters, show_progress) as bar:
            for it in range(warmup + iters):
                k = it % len(phases)
                for phase in list(phases[k:]) + list(phases[:k]):
                    dt = self.timed(phase, it % n)
                    if it >= warmup:
                        times[phase].append(dt)
                        for name, v in (split.get(phase) or {}).items():
                            v.append(self.last_split[name])
                bar.update()
        self.split_times = split
        return times
