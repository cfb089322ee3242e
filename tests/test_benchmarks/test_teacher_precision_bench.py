"""The teacher-precision benchmark's own measurements: heap peak of a
forward and the paired efficacy table."""
import statistics

import torch
from mmkd_bench.precision import (format_precision_efficacy, forward_peak_mb,
                                  tensor_mb)
from torch import nn


class Allocates(nn.Module):
    """Returns a fresh ``(n,)`` float32 tensor: n * 4 bytes alive after it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x):
        return x + torch.ones(self.n)


def test_forward_peak_sees_the_live_activations():
    n = 4 * 2**20  # 16 MB per activation
    model = nn.Sequential(Allocates(n), Allocates(n), Allocates(n))
    out = []
    peak = forward_peak_mb(model, lambda: out.append(model(torch.zeros(n))))
    # the input of a module and its output are alive at once: >= 2 x 16 MB
    assert 30 < peak < 100
    assert tensor_mb(nn.Linear(1024, 1024)) == (1024 * 1024 + 1024) * 4 / 2**20


def test_efficacy_table_pairs_seeds():
    plain = [90.0, 91.0, 92.0, 93.0]
    fp32 = [92.0, 92.5, 94.0, 95.0]
    bf16 = [92.5, 92.5, 93.0, 95.5]
    runs = [
        dict(model=m, seed=s, value=v)
        for m, values in (('plain', plain), ('cwt', fp32), ('cwt_bf16', bf16))
        for s, v in enumerate(values)
    ]
    runs.append(dict(model='cwt_bf16', seed=9, value=0.0))  # no fp32 pair
    row = next(
        line for line in format_precision_efficacy(runs).splitlines()
        if line.startswith('| cwt |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    diff = [b - a for a, b in zip(fp32, bf16)]
    assert cells[1] == '4'
    assert cells[4] == (f'{statistics.fmean(diff):+.2f} +- '
                        f'{statistics.stdev(diff):.2f}')
    assert cells[5] == '2 / 1 / 1'
    gain = [a - p for a, p in zip(fp32, plain)]
    assert cells[6].startswith(f'{statistics.fmean(gain):+.2f}')


def test_efficacy_report_adds_the_precision_table_only_with_both_arms(
        tmp_path):
    from mmkd_bench.efficacy_report import write_report
    from mmkd_bench.task_base import RunResult

    class FakeTask:
        metric_label = 'top-1 (%)'
        settings = {}
        sources = {}

        def describe(self):
            return ['fake']

    def report(models):
        runs = [
            RunResult('t', m, s, 90.0 + s + (0.5 if m == 'cwt_bf16' else 0),
                      1.0) for m in models for s in range(3)
        ]
        entry = dict(task=FakeTask(), runs=runs, skipped={}, time=1.0)
        return write_report(
            dict(fake=entry), str(tmp_path), [m for m in models])

    with_both = report(['plain', 'cwt', 'cwt_bf16'])
    section = with_both.split('Teacher precision', 1)[1]
    row = next(line for line in section.splitlines()
               if line.startswith('| cwt |'))
    # three seeds, bf16 0.5 better on each: mean +0.50, no spread, 3 wins
    assert '| 3 |' in row and '+0.50 +- 0.00' in row and '3 / 0 / 0' in row
    assert 'Teacher precision' not in report(['plain', 'cwt'])


def test_size_option_reaches_the_benchmark(monkeypatch):
    """``--size H W`` sets the synthetic image size; without it the
    overhead benchmark's default per host kind (``None``) is used."""
    import benchmark_teacher_precision as script
    import mmkd_bench.precision as precision
    seen = []

    def fake(config, **kwargs):
        seen.append(kwargs['img_size'])
        return dict(
            ratio_lp=1.0, ratio=1.0, teacher_speedup=1.0, wall_time_s=0.0)

    monkeypatch.setattr(precision, 'benchmark_precision', fake)
    monkeypatch.setattr(precision, 'format_precision_table', lambda r: '')
    script.main(['a.py', '--size', '512', '768', '--threads', '0'])
    script.main(['a.py'])
    assert seen == [[512, 768], None]
