"""The overhead and precision benchmarks on a two-teacher distiller: both
teachers are timed in (b), each is truncated after its own last recorded
module, and both appear in the results and the tables."""
import glob
import os.path as osp

import pytest
import torch
import yaml
from bench_utils import REPO
from mmkd_bench.overhead import (OverheadBenchmark, benchmark_config,
                                 count_modules_run)
from mmkd_bench.precision import benchmark_precision, format_precision_table
from mmkd_bench.report import format_tables


def two_teacher_config() -> str:
    """The first shipped config whose metafile entry lists ``Teachers``
    (looked up, so that renaming the config does not break the test)."""
    for metafile in sorted(
            glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml'))):
        with open(metafile) as f:
            for model in yaml.safe_load(f).get('Models') or []:
                if len(model['Metadata'].get('Teachers') or {}) == 2:
                    return osp.join(REPO, model['Config'])
    raise AssertionError('no shipped config with two teachers')


CONFIG = two_teacher_config()
# the shipped ResNet-50 + DeiT-S -> ResNet-18 config with smaller teachers
# of the same kinds (connector widths follow at build time)
TINY = dict(
    img_size=(64, 64),
    batch_size=1,
    num_batches=1,
    cfg_options={
        'model.teachers.cnn.config':
        'mmpretrain::resnet/resnet18_8xb32_in1k.py',
        'model.teachers.vit.config':
        'mmpretrain::deit/deit-tiny_4xb256_in1k.py',
    })


@pytest.fixture(scope='module')
def bench():
    return OverheadBenchmark(CONFIG, timer='process', **TINY)


def calls_of(module: torch.nn.Module) -> tuple:
    """A call counter on ``module`` and its hook handle."""
    counter = {'n': 0}
    handle = module.register_forward_hook(
        lambda *_: counter.__setitem__('n', counter['n'] + 1))
    return counter, handle


def test_teacher_phase_runs_each_teacher_only_to_its_last_module(bench):
    assert bench.teacher_names == ['cnn', 'vit']
    cnn, vit = (bench.distiller.teachers[n] for n in bench.teacher_names)
    # what each teacher records is the last module it needs; what follows
    # it in the forward must not run when truncated
    assert bench.distiller.teacher_recorders['vit'].paths == [
        'backbone.layers.11'
    ]
    watched = dict(
        cnn_layer4=cnn.backbone.layer4,
        cnn_head=cnn.head,
        vit_last_block=vit.backbone.layers[11],
        vit_final_norm=vit.backbone.ln1,
        vit_head=vit.head)
    counters = {k: calls_of(m) for k, m in watched.items()}
    try:
        bench.run('teacher', 0)
        cut = {k: c['n'] for k, (c, _) in counters.items()}
        bench.run('teacher_full', 0)
        full = {k: c['n'] - cut[k] for k, (c, _) in counters.items()}
    finally:
        for _, handle in counters.values():
            handle.remove()
    assert cut == dict(
        cnn_layer4=1,
        cnn_head=0,
        vit_last_block=1,
        vit_final_norm=0,
        vit_head=0)
    assert set(full.values()) == {1}  # the hooks do count

    check = bench.truncation_check()
    assert set(check['teachers']) == {'cnn', 'vit'}
    for name, t in check['teachers'].items():
        n_cut, n_full = t['modules_run']
        assert t['truncated'] and t['features_identical'], name
        assert n_cut < n_full <= t['modules_total'], name
    assert check['truncated'] and check['features_identical']
    # the count is of modules entered: the ViT's whole forward enters its
    # head, its truncated one stops before it
    _, n_vit = count_modules_run(vit, lambda: bench.run('teacher', 0))
    assert n_vit == check['teachers']['vit']['modules_run'][0]


def test_teacher_time_is_the_sum_of_both_teachers(bench):
    times = bench.measure_times(iters=2, warmup=0)
    split = bench.split_times
    assert set(split) == {'teacher', 'teacher_full'}
    for phase, per in split.items():
        assert set(per) == {'cnn', 'vit'}
        for i, total in enumerate(times[phase]):
            shares = [per[name][i] for name in ('cnn', 'vit')]
            assert min(shares) > 0
            # (b) is both teachers: more than either alone, and the two
            # shares make up nearly all of it
            assert 0.8 * total <= sum(shares) <= total, (phase, i)
            assert total > 1.2 * max(shares), (phase, i)


def test_results_and_table_list_every_teacher():
    r = benchmark_config(
        CONFIG,
        iters=1,
        warmup=0,
        memory=False,
        timer='process',
        img_size=TINY['img_size'],
        batch_size=1,
        cfg_options=TINY['cfg_options'])
    assert set(r['teachers']) == {'cnn', 'vit'}
    assert r['truncated'] is True and r['features_identical'] is True
    for name, t in r['teachers'].items():
        assert set(t['times']) == {'teacher', 'teacher_full'}
        assert t['truncated'] is True, name
        share = t['times']['teacher']['median_ms']
        assert 0 < share < r['times']['teacher']['median_ms'], name
    rows = [
        ln for ln in format_tables([r]).splitlines()
        if ln.startswith(f'| {osp.splitext(osp.basename(CONFIG))[0]} | ')
    ]
    assert [ln.split(' | ')[1] for ln in rows[1:]] == ['cnn', 'vit']
    assert all(ln.endswith('| yes | yes |') for ln in rows[1:])


def test_precision_benchmark_converts_and_times_every_teacher(bench):
    r = benchmark_precision(
        CONFIG,
        iters=1,
        warmup=0,
        memory=True,
        img_size=TINY['img_size'],
        batch_size=1,
        timer='process',
        cfg_options=TINY['cfg_options'])
    assert set(r['teachers']) == {'cnn', 'vit'}
    assert r['teacher_dtype'] == 'bf16' and r['truncated_lp'] is True
    for name, t in r['teachers'].items():
        assert t['teacher_dtype'] == 'bf16' and t['truncated_lp'], name
        assert set(t['times']) == {'teacher', 'teacher_lp'}
        assert (t['times']['teacher_lp']['median_ms']
                < r['times']['teacher_lp']['median_ms'])
    # the weights of both teachers (the fixture's: the same models in fp32),
    # halved in bf16
    m = r['memory']
    both = [
        t for model in bench.distiller.teachers.values()
        for t in list(model.parameters()) + list(model.buffers())
    ]
    assert m['weights_mb'] == pytest.approx(
        sum(t.numel() * t.element_size() for t in both) / 2**20)
    assert m['weights_lp_mb'] == pytest.approx(m['weights_mb'] / 2, rel=0.05)
    assert m['teacher_fwd_mb'] >= 0 and m['teacher_lp_fwd_mb'] >= 0
    rows = [
        ln for ln in format_precision_table([r]).splitlines()
        if ln.startswith(f'| {osp.splitext(osp.basename(CONFIG))[0]} | ')
    ]
    # times, memory, then one row per teacher
    assert [ln.split(' | ')[1] for ln in rows[2:]] == ['cnn', 'vit']
    assert all(ln.endswith('| bf16 | yes |') for ln in rows[2:])
