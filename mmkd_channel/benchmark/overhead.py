"""Overhead benchmark: a distiller's train step against its physical floor.

In one process and on the same synthetic batches it times

* (a) ``student``: the plain student's train step (data preprocessing,
  forward with losses, backward, optimizer step through an
  ``OptimWrapper``), built from the distillation config's student dict;
* (b) ``teacher``: the teacher's forward as the distiller runs it
  (``FeatureDistiller.teacher_features`` on preprocessed inputs, under
  ``no_grad``, truncated after the last recorded module unless the config
  sets ``truncate_teacher=False``);
* (b') ``teacher_full``: the same without truncation;
* (d) ``losses``: the distillation terms alone, connectors and losses
  forward and backward on recorded features plus the optimizer step over
  the connectors' parameters (the method's own compute, which no
  implementation of that method avoids);
* (c) ``distill``: the distiller's full train step,

interleaved (a, b, b', d, c, then b, b', d, c, a, ...: the order rotates
every iteration) so that drift and cache effects hit every phase alike.
The floor of any implementation is (a) + (b); the reported ``ratio`` is
``median(c) / (median(a) + median(b))``. ``ratio_with_losses``,
``c / (a + b + d)``, separates the distiller's own overhead (hooks,
recording, bookkeeping) from the cost of the connectors and losses.

The learning rate is 0 by default: every iteration then does the same work
on the same batches (an optimizer step costs the same whatever the lr, and
random weights trained at a real lr on noise drift to NaNs and change how
many proposals a detector keeps). Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` per phase; on CPU each phase runs in a
fresh process that builds the same models and reports its peak RSS
(``VmHWM``, reset after building via ``/proc/self/clear_refs``) minus its
RSS before the phase, i.e. activations, gradients and optimizer state.
"""
import copy
import gc
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

PHASES = ('student', 'teacher', 'teacher_full', 'losses', 'distill')
MEMORY_PHASES = ('student', 'teacher', 'distill')
PHASE_LABELS = {
    'student': '(a) student step',
    'teacher': '(b) teacher fwd',
    'teacher_full': "(b') teacher fwd, no truncation",
    'losses': '(d) distill terms fwd+bwd+step',
    'distill': '(c) distill step',
}
TIMERS = {'wall': time.perf_counter, 'process': time.process_time}
DEFAULT_SIZES = {
    'mmdet': (128, 128),
    'mmseg': (128, 256),
    'mmpretrain': (128, 128)
}


# --------------------------------------------------------------------- #
# config and models
def load_distill_config(config: str,
                        cfg_options: Optional[dict] = None) -> Config:
    """Load a distillation config for benchmarking on random weights.

    The teacher checkpoint is dropped, ``Pretrained`` initialisations are
    removed (nothing downloads), SyncBN becomes BN, and the top-level
    ``data_preprocessor`` is handed to the model as the Runner does.

    Args:
        config (str): Path or ``mmkd_channel::`` form of the config.
        cfg_options (dict, optional): ``--cfg-options`` overrides.

    Returns:
        Config: The modified config.
    """
    import mmkd_channel  # noqa: F401  (registries, mmkd_channel:: scope)
    from mmkd_channel.testing.tiny_configs import (host_models, no_pretrained,
                                                   replace_sync_bn)
    from mmkd_channel.utils import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = cfg.model
    if 'student' not in model or 'teacher' not in model:
        raise ValueError(f'{config}: not a distillation config (its model '
                         'has no `student` and `teacher`).')
    model.teacher_ckpt = None
    for m in host_models(cfg):
        no_pretrained(m)
        replace_sync_bn(m)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor',
                         copy.deepcopy(cfg.data_preprocessor))
    return cfg


def host_kind(model_cls: type) -> str:
    """``'mmdet'``, ``'mmseg'`` or ``'mmpretrain'`` for a host model class."""
    root = model_cls.__module__.split('.')[0]
    if root not in DEFAULT_SIZES:
        raise TypeError(f'{model_cls.__name__} ({model_cls.__module__}) '
                        'is not an mmdet, mmseg or mmpretrain model')
    return root


def _num_classes(model_cfg: dict) -> int:
    from mmkd_channel.testing.tiny_configs import walk_dicts
    found = [
        d['num_classes'] for d in walk_dicts(model_cfg)
        if isinstance(d.get('num_classes'), int)
    ]
    return max(found) if found else 10


def _set_seg_size(cfg: Config, img_size: Tuple[int, int]) -> None:
    """mmseg pads training batches to ``size``: make it the image size."""
    from mmkd_channel.testing.tiny_configs import walk_dicts
    for d in walk_dicts([cfg.model, cfg.get('data_preprocessor')]):
        if d.get('type', '').endswith('SegDataPreProcessor') and d.get('size'):
            d['size'] = tuple(img_size)


# --------------------------------------------------------------------- #
# synthetic batches
def make_batch(kind: str,
               batch_size: int,
               img_size: Tuple[int, int],
               num_classes: int,
               seed: int,
               with_mask: bool = False) -> dict:
    """A batch as a host dataloader yields it: uint8 images + data samples.

    Args:
        kind (str): ``'mmdet'`` (``DetDataSample`` with 1-4 boxes, labels
            and, if ``with_mask``, bitmap masks), ``'mmseg'``
            (``SegDataSample`` with a blocky ``gt_sem_seg``) or
            ``'mmpretrain'`` (``DataSample`` with ``gt_label``).
        batch_size (int): Images in the batch.
        img_size (tuple): ``(H, W)``.
        num_classes (int): Label range.
        seed (int): Seed of the batch's content.
        with_mask (bool): Add instance masks (Mask R-CNN).

    Returns:
        dict: ``inputs`` (list of ``(3, H, W)`` uint8 tensors) and
        ``data_samples``.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = img_size
    inputs, samples = [], []
    meta = dict(
        img_path='',
        ori_shape=(h, w),
        img_shape=(h, w),
        pad_shape=(h, w),
        scale_factor=(1.0, 1.0),
        flip=False,
        flip_direction=None)
    for i in range(batch_size):
        inputs.append(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
        if kind == 'mmdet':
            samples.append(
                _det_sample(g, h, w, num_classes, with_mask,
                            dict(meta, img_id=i)))
        elif kind == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            s = SegDataSample(metainfo=meta)
            coarse = torch.randint(
                0, num_classes, (1, h // 16 + 1, w // 16 + 1), generator=g)
            label = coarse.repeat_interleave(16, 1).repeat_interleave(16, 2)
            s.gt_sem_seg = PixelData(data=label[:, :h, :w].contiguous())
            samples.append(s)
        elif kind == 'mmpretrain':
            from mmpretrain.structures import DataSample
            label = int(torch.randint(0, num_classes, (1, ), generator=g))
            samples.append(
                DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(
                    h, w))).set_gt_label(label))
        else:
            raise ValueError(f'unknown host kind {kind!r}')
    return dict(inputs=inputs, data_samples=samples)


def _det_sample(g, h, w, num_classes, with_mask, meta):
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    k = int(torch.randint(1, 5, (1, ), generator=g))
    size = torch.rand(k, 2, generator=g) * 0.4 + 0.15
    x1 = torch.rand(k, generator=g) * (1 - size[:, 0]) * w
    y1 = torch.rand(k, generator=g) * (1 - size[:, 1]) * h
    boxes = torch.stack([x1, y1, x1 + size[:, 0] * w, y1 + size[:, 1] * h],
                        dim=1)
    s = DetDataSample(metainfo=meta)
    gt = InstanceData(
        bboxes=HorizontalBoxes(boxes),
        labels=torch.randint(0, num_classes, (k, ), generator=g))
    if with_mask:
        masks = np.zeros((k, h, w), dtype=np.uint8)
        for j, (a, b, c, d) in enumerate(boxes.round().long().tolist()):
            masks[j, b:d, a:c] = 1
        gt.masks = BitmapMasks(masks, h, w)
    s.gt_instances = gt
    s.ignored_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.zeros(0, 4)),
        labels=torch.zeros(0, dtype=torch.long))
    return s


# --------------------------------------------------------------------- #
# the benchmark
def _leaf(feat):
    """Detached copies of a (tuple of) tensor(s) that require grad."""
    if isinstance(feat, (tuple, list)):
        return type(feat)(_leaf(f) for f in feat)
    return feat.detach().clone().requires_grad_(feat.is_floating_point())


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
            _set_seg_size(cfg, self.img_size)
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

        num_classes = _num_classes(student_cfg)
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
            self.features.append((s_out, self.teacher_forward(i, True)))

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
    def teacher_forward(self, i: int, truncate: bool) -> dict:
        """The teacher's forward on preprocessed batch ``i``."""
        data = self.preprocessed[i]
        old = self.distiller.truncate_teacher
        self.distiller.truncate_teacher = truncate
        try:
            return self.distiller.teacher_features(
                data['inputs'],
                data['data_samples'],
                stop_after=self.student_calls[i])
        finally:
            self.distiller.truncate_teacher = old

    def distill_terms(self, i: int) -> None:
        """Connectors + losses forward and backward on batch ``i``'s
        recorded features (student features as fresh leaves), then the
        connectors' optimizer step."""
        s_out, t_out = self.features[i]
        samples = self.preprocessed[i]['data_samples']
        total = 0
        for pair in self.distiller.distill_pairs.values():
            s = _leaf(s_out[pair.student_path])
            total = total + pair(s, t_out[pair.teacher_path], samples)
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
            self.teacher_forward(arg, self.truncate)
        elif phase == 'teacher_full':
            self.teacher_forward(arg, False)
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

    def truncation_check(self) -> dict:
        """Teacher features with and without truncation, compared."""
        from mmkd_channel.models.losses.base import as_tensor_list
        cut, full = self.teacher_forward(0,
                                         True), self.teacher_forward(0, False)
        same = True
        for p in self.distiller.teacher_recorder.paths:
            a, b = as_tensor_list(cut.get(p, ())), as_tensor_list(
                full.get(p, ()))
            same &= len(a) == len(b) and all(
                torch.equal(x, y) for x, y in zip(a, b))
        return dict(features_identical=bool(same))

    def measure_times(self,
                      iters: int,
                      warmup: int,
                      phases: Sequence[str] = PHASES) -> Dict[str, list]:
        """Interleaved timings: ``phase -> [seconds]`` after ``warmup``."""
        times: Dict[str, list] = {p: [] for p in phases}
        n = len(self.batches)
        for it in range(warmup + iters):
            k = it % len(phases)
            for phase in list(phases[k:]) + list(phases[:k]):
                dt = self.timed(phase, it % n)
                if it >= warmup:
                    times[phase].append(dt)
        return times


# --------------------------------------------------------------------- #
# memory
def _proc_status() -> Dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in kB."""
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key = line.split(':')[0]
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(line.split()[1])
    return out


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def measure_memory_in_process(bench: OverheadBenchmark,
                              phase: str,
                              repeats: int = 2) -> dict:
    """Peak memory of ``phase`` in this process (CUDA: exact; CPU: RSS).

    Returns:
        dict: ``peak_mb`` (absolute peak during the phase) and ``delta_mb``
        (peak minus the memory in use before it).
    """
    if bench.device.startswith('cuda'):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for r in range(repeats):
            bench.run(phase, bench.prepare(phase, r % len(bench.batches)))
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return dict(peak_mb=peak / 2**20, delta_mb=(peak - before) / 2**20)
    gc.collect()
    reset = _reset_peak_rss()
    before = _proc_status()['VmRSS']
    for r in range(repeats):
        bench.run(phase, bench.prepare(phase, r % len(bench.batches)))
    peak = _proc_status()['VmHWM']
    return dict(
        peak_mb=peak / 1024,
        delta_mb=(peak - before) / 1024 if reset else math.nan)


def _memory_worker(kwargs: dict, phase: str, repeats: int) -> dict:
    """Fresh-process entry: build everything, then run one phase."""
    import logging
    logging.getLogger('mmengine').setLevel(logging.ERROR)
    torch.set_num_threads(kwargs.pop('threads'))
    bench = OverheadBenchmark(**kwargs)
    return measure_memory_in_process(bench, phase, repeats)


def measure_memory(kwargs: dict,
                   phases: Sequence[str] = MEMORY_PHASES,
                   repeats: int = 2) -> Dict[str, dict]:
    """Peak RSS per phase, each in a fresh process (CPU).

    Args:
        kwargs (dict): :class:`OverheadBenchmark` arguments.
        phases (Sequence[str]): Phases to measure.
        repeats (int): Calls of the phase (the first allocates gradients
            and optimizer state).
    """
    out = {}
    ctx = get_context('spawn')
    for phase in phases:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            out[phase] = pool.submit(
                _memory_worker, dict(kwargs, threads=torch.get_num_threads()),
                phase, repeats).result()
    return out


# --------------------------------------------------------------------- #
# one config, end to end
def _stats(values: List[float]) -> dict:
    q = statistics.quantiles(
        values, n=4) if len(values) > 1 else [values[0]] * 3
    return dict(
        median_ms=statistics.median(values) * 1e3,
        q1_ms=q[0] * 1e3,
        q3_ms=q[2] * 1e3,
        all_ms=[v * 1e3 for v in values])


def benchmark_config(config: str,
                     img_size: Optional[Sequence[int]] = None,
                     batch_size: int = 2,
                     iters: int = 20,
                     warmup: int = 3,
                     lr: float = 0.0,
                     device: str = 'cpu',
                     memory: bool = True,
                     cfg_options: Optional[dict] = None,
                     timer: str = 'wall') -> dict:
    """Time (a), (b), (b'), (c) of one config and measure their memory.

    Returns:
        dict: JSON-ready results: ``times`` (per phase: median, quartiles
        and every sample, ms), ``ratio`` (``c / (a + b)`` of the medians),
        ``ratio_paired`` (median over iterations of ``c_i / (a_i + b_i)``),
        ``ratio_with_losses`` (``c / (a + b + d)``),
        ``truncation_speedup`` (``b' / b``), ``features_identical``,
        ``memory`` (per phase ``peak_mb`` and ``delta_mb``) and the setup.
    """
    kwargs = dict(
        config=config,
        img_size=img_size,
        batch_size=batch_size,
        lr=lr,
        device=device,
        cfg_options=cfg_options)
    t0 = time.perf_counter()
    bench = OverheadBenchmark(**kwargs, timer=timer)
    check = bench.truncation_check()
    times = bench.measure_times(iters, warmup)
    med = {p: statistics.median(v) for p, v in times.items()}
    paired = [
        c / (a + b) for a, b, c in zip(times['student'], times['teacher'],
                                       times['distill'])
    ]
    result = dict(
        config=config,
        host=bench.kind,
        img_size=list(bench.img_size),
        batch_size=batch_size,
        iters=iters,
        warmup=warmup,
        device=device,
        threads=torch.get_num_threads(),
        timer=timer,
        truncate_teacher=bench.truncate,
        times={
            p: _stats(v)
            for p, v in times.items()
        },
        ratio=med['distill'] / (med['student'] + med['teacher']),
        ratio_with_losses=med['distill'] /
        (med['student'] + med['teacher'] + med['losses']),
        ratio_paired=statistics.median(paired),
        truncation_speedup=med['teacher_full'] / med['teacher'],
        **check)
    if memory:
        kwargs['img_size'] = bench.img_size
        result['memory'] = ({
            p: measure_memory_in_process(bench, p)
            for p in MEMORY_PHASES
        } if device.startswith('cuda') else measure_memory(kwargs))
    result['wall_time_s'] = time.perf_counter() - t0
    return result


def environment() -> dict:
    """Machine and library versions, for the report."""
    import mmengine
    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        mmengine=mmengine.__version__,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        processor=platform.processor() or platform.machine())
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['processor'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    for name in ('mmdet', 'mmseg', 'mmpretrain'):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info


def format_tables(results: Sequence[dict]) -> str:
    """Markdown tables of times, ratios and memory for several configs."""
    lines = [
        '| config | size | (a) student step | (b) teacher fwd | '
        "(b') no truncation | (d) distill terms | (c) distill step | "
        "(c)/((a)+(b)) | paired | (c)/((a)+(b)+(d)) | (b')/(b) |",
        '|---|---|' + '---:|' * 9
    ]
    for r in results:
        t = {p: r['times'][p]['median_ms'] for p in PHASES}
        name = os.path.splitext(os.path.basename(r['config']))[0]
        lines.append(
            f"| {name} | {r['img_size'][0]}x{r['img_size'][1]} | "
            f"{t['student']:.1f} | {t['teacher']:.1f} | "
            f"{t['teacher_full']:.1f} | {t['losses']:.1f} | "
            f"{t['distill']:.1f} | **{r['ratio']:.3f}** | "
            f"{r['ratio_paired']:.3f} | {r['ratio_with_losses']:.3f} | "
            f"{r['truncation_speedup']:.2f} |")
    lines.append('')
    if results:
        r = results[0]
        clock = ('wall-clock'
                 if r.get('timer', 'wall') == 'wall' else 'process CPU')
        lines.append(f"Median {clock} ms per call; batch {r['batch_size']}, "
                     f"{r['iters']} interleaved iterations, {r['device']}, "
                     f"{r['threads']} torch threads.")
    if any('memory' in r for r in results):
        lines += [
            '', '| config | peak memory (MB): (a) student step | '
            '(b) teacher fwd | (c) distill step | (c) - ((a) + (b)) '
            '|', '|---|---:|---:|---:|---:|'
        ]
        for r in results:
            m = r.get('memory')
            if not m:
                continue
            d = {p: m[p]['delta_mb'] for p in MEMORY_PHASES}
            name = os.path.splitext(os.path.basename(r['config']))[0]
            lines.append(
                f"| {name} | {d['student']:.0f} | {d['teacher']:.0f} | "
                f"{d['distill']:.0f} | "
                f"{d['distill'] - d['student'] - d['teacher']:+.0f} |")
        lines.append('')
        lines.append('Peak memory of each phase above what was resident '
                     'before it (CPU: RSS of a fresh process running only '
                     'that phase; CUDA: max_memory_allocated).')
    return '\n'.join(lines)
