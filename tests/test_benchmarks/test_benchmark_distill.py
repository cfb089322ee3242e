"""The overhead benchmark runs on tiny configs and writes what it says."""
import json
import math
import os.path as osp

import pytest
import torch
from bench_utils import REPO, load_script
from mmkd_bench.memory import measure_memory, measure_memory_in_process
from mmkd_bench.model_index import load_pairs
from mmkd_bench.overhead import PHASES, OverheadBenchmark
from mmkd_bench.report import format_tables
from mmkd_bench.synthetic import make_batch

# the model index's CWT classification config (MobileNetV1 <- ResNet-50),
# looked up there so that renaming the config does not break the test
CWT_CLS = next(
    p.config for p in load_pairs(REPO)
    if p.collection == 'CWT' and p.task == 'Image Classification')
# the shipped MobileNetV1 <- ResNet-50 config shrunk to MobileNetV1 0.25x
# <- ResNet-18, through --cfg-options as a user would
TINY_OPTIONS = [
    'model.student.backbone.widen_factor=0.25',
    'model.student.head.in_channels=256',
    'model.teacher=mmpretrain::resnet/resnet18_8xb32_in1k.py',
    'model.distill.last_stage.connector.in_channels=256',
    'model.distill.last_stage.connector.out_channels=512',
]
TINY_KWARGS = dict(
    config=CWT_CLS,
    img_size=(32, 32),
    batch_size=2,
    num_batches=2,
    cfg_options={
        'model.student.backbone.widen_factor': 0.25,
        'model.student.head.in_channels': 256,
        'model.teacher': 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
        'model.distill.last_stage.connector.in_channels': 256,
        'model.distill.last_stage.connector.out_channels': 512,
    })


@pytest.fixture(scope='module')
def tiny_bench(repo_root):
    return OverheadBenchmark(
        **dict(TINY_KWARGS, config=osp.join(repo_root, CWT_CLS)))


def test_cli_writes_json_and_table(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    tool = load_script('benchmark_overhead')
    out = tmp_path / 'overhead.json'
    tool.main([
        CWT_CLS, '--iters', '2', '--warmup', '1', '--img-size', '32', '32',
        '--no-memory', '--json',
        str(out), '--cfg-options'
    ] + TINY_OPTIONS)
    data = json.loads(out.read_text())
    assert {'command', 'environment', 'results'} <= set(data)
    (r, ) = data['results']
    assert r['host'] == 'mmpretrain' and r['img_size'] == [32, 32]
    assert set(r['times']) == set(PHASES)
    for phase in PHASES:
        t = r['times'][phase]
        assert len(t['all_ms']) == 2
        assert t['q1_ms'] <= t['median_ms'] <= t['q3_ms']
        assert t['median_ms'] > 0
    med = {p: r['times'][p]['median_ms'] for p in PHASES}
    assert r['ratio'] == pytest.approx(med['distill'] /
                                       (med['student'] + med['teacher']))
    assert r['ratio_with_losses'] == pytest.approx(
        med['distill'] / (med['student'] + med['teacher'] + med['losses']))
    assert r['truncate_teacher'] is True
    assert r['features_identical'] is True
    assert math.isfinite(r['ratio_paired'])

    table = format_tables(data['results'])
    name = osp.splitext(osp.basename(CWT_CLS))[0]
    rows = [
        ln for ln in table.split('\n\n')[0].splitlines()
        if ln.startswith(f'| {name} |')
    ]
    assert len(rows) == 1 and rows[0].count('|') == 12
    # the per-teacher table: one row, its one teacher, truncated
    (row, ) = [
        ln for ln in table.splitlines()
        if ln.startswith(f'| {name} | teacher |')
    ]
    assert row.endswith('| yes | yes |')


def test_phases_train_only_their_models(tiny_bench):
    b = tiny_bench
    teacher_before = [p.clone() for p in b.distiller.teacher.parameters()]
    b.optim_student.optimizer.param_groups[0]['lr'] = 0.1
    b.optim_distill.optimizer.param_groups[0]['lr'] = 0.1
    try:
        s0 = [p.clone() for p in b.student.parameters()]
        d0 = [p.clone() for p in b.distiller.student.parameters()]
        b.run('student', b.prepare('student', 0))
        assert any(not torch.equal(a, p)
                   for a, p in zip(s0, b.student.parameters()))
        assert all(
            torch.equal(a, p)
            for a, p in zip(d0, b.distiller.student.parameters()))
        b.run('distill', b.prepare('distill', 0))
        assert any(not torch.equal(a, p)
                   for a, p in zip(d0, b.distiller.student.parameters()))
        for phase in ('teacher', 'teacher_full'):
            b.run(phase, b.prepare(phase, 1))
        # (d) steps the connector (as (c) does), never the student
        b.optim_terms.optimizer.param_groups[0]['lr'] = 0.1
        c0 = [p.clone() for p in b.distiller.distill_pairs.parameters()]
        d1 = [p.clone() for p in b.distiller.student.parameters()]
        b.run('losses', b.prepare('losses', 0))
        assert any(not torch.equal(a, p)
                   for a, p in zip(c0, b.distiller.distill_pairs.parameters()))
        assert all(
            torch.equal(a, p)
            for a, p in zip(d1, b.distiller.student.parameters()))
    finally:
        b.optim_student.optimizer.param_groups[0]['lr'] = 0.0
        b.optim_distill.optimizer.param_groups[0]['lr'] = 0.0
        b.optim_terms.optimizer.param_groups[0]['lr'] = 0.0
    assert all(
        torch.equal(a, p)
        for a, p in zip(teacher_before, b.distiller.teacher.parameters()))
    times = b.measure_times(iters=2, warmup=0)
    assert all(len(v) == 2 and min(v) > 0 for v in times.values())


def test_memory_in_process_and_in_a_fresh_process(tiny_bench, repo_root):
    # The kernel batches each thread's RSS counter (up to 64 pages) before
    # it reaches /proc, so a phase whose allocations fit in memory malloc
    # already holds can read a fraction of a megabyte below its start.
    slack_mb = 1.0
    m = measure_memory_in_process(tiny_bench, 'distill', repeats=1)
    assert m['peak_mb'] > 0 and m['delta_mb'] > -slack_mb
    kwargs = dict(TINY_KWARGS, config=osp.join(repo_root, CWT_CLS))
    fresh = measure_memory(kwargs, phases=['student'], repeats=1)
    assert fresh['student']['peak_mb'] > 0
    assert fresh['student']['delta_mb'] > -slack_mb
    # The peak is a real process size, not a delta: the built models alone
    # take tens of megabytes.
    assert fresh['student']['peak_mb'] > fresh['student']['delta_mb'] + 10


@pytest.mark.parametrize('kind', ['mmdet', 'mmseg', 'mmpretrain'])
def test_synthetic_batches_are_host_batches(kind):
    batch = make_batch(
        kind, 2, (32, 48), num_classes=5, seed=0, with_mask=True)
    assert [tuple(x.shape) for x in batch['inputs']] == [(3, 32, 48)] * 2
    assert all(x.dtype == torch.uint8 for x in batch['inputs'])
    for s in batch['data_samples']:
        assert tuple(s.img_shape) == (32, 48)
        if kind == 'mmdet':
            n = len(s.gt_instances)
            assert n >= 1 and s.gt_instances.masks.masks.shape == (n, 32, 48)
            assert int(s.gt_instances.labels.max()) < 5
        elif kind == 'mmseg':
            assert tuple(s.gt_sem_seg.data.shape) == (1, 32, 48)
            assert int(s.gt_sem_seg.data.max()) < 5
        else:
            assert 0 <= int(s.gt_label) < 5
    again = make_batch(kind, 2, (32, 48), num_classes=5, seed=0)
    assert torch.equal(batch['inputs'][1], again['inputs'][1])
