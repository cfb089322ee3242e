"""The overhead benchmark with the teacher in fp32 and in reduced precision.

:class:`PrecisionBenchmark` adds to :class:`~.overhead.OverheadBenchmark`
a second distiller of the same config with ``teacher_dtype`` /
``teacher_channels_last`` set (its student and connectors hold the same
weights as the fp32 one's) and two phases, timed interleaved with the
others:

* (b_lp) ``teacher_lp``: the reduced-precision teacher's forward as the
  distiller runs it (inputs cast in, features cast back);
* (c_lp) ``distill_lp``: that distiller's full train step.

The ratio of interest is ``c_lp / (a + b)``: the reduced-precision step
against the fp32 floor. Teacher memory: the bytes of its parameters and
buffers (exact) and the peak of the heap in use during its forward
(glibc ``mallinfo2``, sampled after every module's output: the
activations alive at once, recorded features included). The fresh-process
peak RSS the overhead benchmark uses reads 0 MB for a teacher forward:
its activations fit in heap that building the models freed.
"""
import copy
import ctypes
import gc
import statistics
import time
from typing import Iterable, Optional, Sequence, Union

import torch

from .overhead import OverheadBenchmark, paired_ratio, result_base

PHASES_LP = ('student', 'teacher', 'teacher_lp', 'distill', 'distill_lp')


def tensor_mb(
        modules: Union[torch.nn.Module, Iterable[torch.nn.Module]]) -> float:
    """MB held by a module's (or several modules') parameters and
    buffers."""
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    tensors = [
        t for m in modules for t in list(m.parameters()) + list(m.buffers())
    ]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd',
                     'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')
    ]


def heap_in_use() -> int:
    """Bytes malloc has handed out and not freed (all arenas + mmap)."""
    libc = ctypes.CDLL('libc.so.6')
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def forward_peak_mb(teachers: Union[torch.nn.Module,
                                    Iterable[torch.nn.Module]], run) -> float:
    """Peak heap in use while ``run()`` runs ``teachers``, above before."""
    if isinstance(teachers, torch.nn.Module):
        teachers = [teachers]
    gc.collect()
    base = heap_in_use()
    peak = [base]
    handles = [
        m.register_forward_hook(lambda *a: peak.append(heap_in_use()))
        for t in teachers for m in t.modules()
    ]
    try:
        run()
        peak.append(heap_in_use())
    finally:
        for h in handles:
            h.remove()
    return (max(peak) - base) / 2**20


class PrecisionBenchmark(OverheadBenchmark):
    """:class:`OverheadBenchmark` plus a reduced-precision teacher.

    Args:
        config (str): Distillation config.
        teacher_dtype (str): ``teacher_dtype`` of the second distiller.
        channels_last (bool): Its ``teacher_channels_last``.
        **kwargs: :class:`OverheadBenchmark` arguments.
    """

    def __init__(self,
                 config: str,
                 teacher_dtype: str = 'bf16',
                 channels_last: bool = True,
                 **kwargs) -> None:
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import MODELS
        super().__init__(config, **kwargs)
        cfg = copy.deepcopy(self.cfg.model)
        cfg.teacher_dtype = teacher_dtype
        cfg.teacher_channels_last = channels_last
        self.lp = MODELS.build(cfg).to(self.device)
        self.lp.student.load_state_dict(self.distiller.student.state_dict())
        self.lp.distill_pairs.load_state_dict(
            self.distiller.distill_pairs.state_dict())
        self.lp.train()
        optim_cfg = copy.deepcopy(self.cfg.optim_wrapper)
        optim_cfg.optimizer.lr = kwargs.get('lr', 0.0)
        self.optim_lp = build_optim_wrapper(self.lp, optim_cfg)

    def prepare(self, phase: str, i: int):
        if phase == 'distill_lp':
            return copy.deepcopy(self.batches[i])
        return super().prepare(phase, i)

    def run(self, phase: str, arg) -> None:
        if phase == 'teacher_lp':
            self.teachers_forward(arg, self.truncate, self.lp)
        elif phase == 'distill_lp':
            self.lp.train_step(arg, self.optim_lp)
        else:
            super().run(phase, arg)


def benchmark_precision(config: str,
                        teacher_dtype: str = 'bf16',
                        channels_last: bool = True,
                        iters: int = 10,
                        warmup: int = 2,
                        memory: bool = True,
                        img_size: Optional[Sequence[int]] = None,
                        batch_size: int = 2,
                        device: str = 'cpu',
                        timer: str = 'wall',
                        cfg_options: Optional[dict] = None) -> dict:
    """Time (a), (b), (b_lp), (c), (c_lp) of one config; teacher memory.

    Returns:
        dict: JSON-ready: ``times`` per phase (median, quartiles, samples,
        ms), ``teachers`` (per teacher: its share of (b) and (b_lp), its
        dtype and speedup, whether it is truncated in that dtype),
        ``ratio`` (``c / (a + b)``), ``ratio_lp`` (``c_lp / (a + b)``),
        ``truncated_lp`` (every reduced-precision teacher ran fewer modules
        truncated), ``ratio_lp_paired`` (median over iterations),
        ``teacher_speedup``
        (``b / b_lp``), ``memory`` (teacher weights MB and forward peak
        RSS per precision) and the setup.
    """
    t0 = time.perf_counter()
    bench = PrecisionBenchmark(
        config,
        teacher_dtype=teacher_dtype,
        channels_last=channels_last,
        img_size=img_size,
        batch_size=batch_size,
        device=device,
        timer=timer,
        cfg_options=cfg_options)
    check = bench.truncation_check(bench.lp)
    times = bench.measure_times(iters, warmup, phases=PHASES_LP)
    med = {p: statistics.median(v) for p, v in times.items()}
    floor = med['student'] + med['teacher']
    precisions = bench.lp.teacher_precisions
    result = result_base(bench, config, iters, warmup, times)
    for name, detail in result['teachers'].items():
        t = detail['times']
        detail.update(
            teacher_dtype=precisions[name].name,
            bn_folded=len(precisions[name].folded),
            truncated_lp=check['teachers'][name]['truncated'],
            teacher_speedup=t['teacher']['median_ms'] /
            t['teacher_lp']['median_ms'])
    # several teachers: one dtype if they all agree ('auto' may differ)
    dtypes = sorted({p.name for p in precisions.values()})
    result.update(
        teacher_dtype='+'.join(dtypes),
        channels_last=channels_last,
        bn_folded=sum(len(p.folded) for p in precisions.values()),
        truncated_lp=check['truncated'],
        ratio=med['distill'] / floor,
        ratio_lp=med['distill_lp'] / floor,
        ratio_lp_paired=paired_ratio(times, 'distill_lp'),
        teacher_speedup=med['teacher'] / med['teacher_lp'])
    result['memory'] = dict(
        weights_mb=tensor_mb(bench.distiller.teachers.values()),
        weights_lp_mb=tensor_mb(bench.lp.teachers.values()))
    if memory and not device.startswith('cuda'):
        for phase, model in (('teacher', bench.distiller), ('teacher_lp',
                                                            bench.lp)):
            result['memory'][f'{phase}_fwd_mb'] = forward_peak_mb(
                model.teachers.values(), lambda: bench.run(phase, 0))
    result['wall_time_s'] = time.perf_counter() - t0
    return result


def format_precision_table(results: Sequence[dict]) -> str:
    """Markdown tables: times and ratios, then teacher memory."""
    if not results:
        return ''
    lp = results[0]['teacher_dtype']
    lines = [
        f'| config | size | (a) student step | (b) teacher fp32 | '
        f'(b) teacher {lp} | (b)/(b_{lp}) | (c) step, fp32 teacher | '
        f'(c) step, {lp} teacher | (c_fp32)/((a)+(b_fp32)) | '
        f'**(c_{lp})/((a)+(b_fp32))** | paired |', '|---|---|' + '---:|' * 9
    ]
    for r in results:
        t = {p: v['median_ms'] for p, v in r['times'].items()}
        name = r['config'].rsplit('/', 1)[-1].rsplit('.', 1)[0]
        lines.append(f"| {name} | {r['img_size'][0]}x{r['img_size'][1]} | "
                     f"{t['student']:.1f} | {t['teacher']:.1f} | "
                     f"{t['teacher_lp']:.1f} | {r['teacher_speedup']:.2f} | "
                     f"{t['distill']:.1f} | {t['distill_lp']:.1f} | "
                     f"{r['ratio']:.3f} | **{r['ratio_lp']:.3f}** | "
                     f"{r['ratio_lp_paired']:.3f} |")
    r = results[0]
    lines += [
        '', f"Median {r['timer']}-clock ms per call; batch "
        f"{r['batch_size']}, {r['iters']} interleaved iterations after "
        f"{r['warmup']} warm-up, {r['device']}, {r['threads']} torch "
        f"threads; {lp} teacher channels-last: {r['channels_last']}.", '',
        f'| config | teacher weights fp32 (MB) | teacher weights {lp} (MB) '
        f'| teacher fwd peak fp32 (MB) | teacher fwd peak {lp} (MB) | '
        f'BN folded |', '|---|---:|---:|---:|---:|---:|'
    ]
    for r in results:
        m = r['memory']
        name = r['config'].rsplit('/', 1)[-1].rsplit('.', 1)[0]
        peak = [
            f'{m[k]:.1f}' if k in m else 'n/a'
            for k in ('teacher_fwd_mb', 'teacher_lp_fwd_mb')
        ]
        lines.append(f"| {name} | {m['weights_mb']:.0f} | "
                     f"{m['weights_lp_mb']:.0f} | {peak[0]} | {peak[1]} | "
                     f"{r['bn_folded']} |")
    lines += [
        '', 'Teacher weights: bytes of its parameters and buffers. Forward '
        'peak: the most heap in use during one teacher forward (batch 0) '
        'above what was in use before it, sampled after every module '
        '(activations and recorded features).'
    ]
    several = [r for r in results if len(r.get('teachers') or {}) > 1]
    if several:
        lines += [
            '', f'| config | teacher | (b) its fwd fp32 | (b) its fwd {lp} '
            f'| (b)/(b_{lp}) | dtype | truncated in it |',
            '|---|---|---:|---:|---:|---|---|'
        ]
    for r in several:
        name = r['config'].rsplit('/', 1)[-1].rsplit('.', 1)[0]
        for teacher, t in r['teachers'].items():
            med = {p: v['median_ms'] for p, v in t['times'].items()}
            lines.append(
                f"| {name} | {teacher} | {med['teacher']:.1f} | "
                f"{med['teacher_lp']:.1f} | {t['teacher_speedup']:.2f} | "
                f"{t['teacher_dtype']} | "
                f"{'yes' if t['truncated_lp'] else 'no'} |")
    return '\n'.join(lines)


def _mean_std(values: Sequence[float], sign: bool = False) -> str:
    if not values:
        return 'n/a'
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    mean = statistics.fmean(values)
    return f'{mean:+.2f} +- {std:.2f}' if sign else f'{mean:.2f} +- {std:.2f}'


def format_precision_efficacy(runs: Sequence[dict],
                              suffix: str = '_bf16',
                              label: str = 'metric (%)') -> str:
    """Markdown: each method with the fp32 and the reduced-precision
    teacher over the same seeds, and their paired difference.

    Args:
        runs (Sequence[dict]): ``model`` (``'plain'``, ``'<method>'`` or
            ``'<method><suffix>'``), ``seed`` and ``value``.
        suffix (str): Model-name suffix of the reduced-precision runs.
        label (str): What ``value`` is.
    """
    by = {}
    for r in runs:
        by.setdefault(r['model'], {})[r['seed']] = r['value']
    plain = by.get('plain', {})
    lines = [
        f'| method | seeds | {label}, fp32 teacher | {label}, '
        f'{suffix[1:]} teacher | {suffix[1:]} - fp32 (paired mean +- std) | '
        f'{suffix[1:]} better / equal / worse | gain over plain, fp32 | '
        f'gain over plain, {suffix[1:]} |', '|---|---:|---:|---:|---:|---:|'
        '---:|---:|'
    ]
    for method in sorted(m for m in by if m + suffix in by):
        lp = by[method + suffix]
        seeds = sorted(set(by[method]) & set(lp))
        fp = [by[method][s] for s in seeds]
        low = [lp[s] for s in seeds]
        diff = [b - a for a, b in zip(fp, low)]
        both = [s for s in seeds if s in plain]
        gain = [by[method][s] - plain[s] for s in both]
        gain_lp = [lp[s] - plain[s] for s in both]
        counts = (sum(d > 0 for d in diff), sum(d == 0 for d in diff),
                  sum(d < 0 for d in diff))
        lines.append(f'| {method} | {len(seeds)} | {_mean_std(fp)} | '
                     f'{_mean_std(low)} | {_mean_std(diff, True)} | '
                     f'{counts[0]} / {counts[1]} / {counts[2]} | '
                     f'{_mean_std(gain, True)} | {_mean_std(gain_lp, True)} |')
    if plain:
        lines.append(f'| plain | {len(plain)} | '
                     f'{_mean_std(list(plain.values()))} | | | | | |')
    return '\n'.join(lines)
