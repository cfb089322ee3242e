"""The efficacy benchmark trains, caches and reports well-formed results."""
import importlib.util
import json
import math
import os.path as osp
import statistics

import pytest
from mmengine.config import Config

from mmkd_channel.benchmark.efficacy import (PLAIN, TEACHER, CityscapesTask,
                                             CocoTask, DigitsTask, RunResult,
                                             bar_chart, markdown_table,
                                             parse_settings, summarize)


def load_tool(repo_root, name):
    path = osp.join(repo_root, 'tools', 'analysis_tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_runs():
    values = {
        TEACHER: {
            0: 98.0
        },
        PLAIN: {
            0: 88.0,
            1: 90.0,
            2: 86.0
        },
        'cwt': {
            0: 91.0,
            1: 91.5,
            2: 89.0
        },
        'kd': {
            0: 87.0,
            2: 88.0
        }
    }
    return [
        RunResult('digits', m, s, v, 10.0 + s)
        for m, per_seed in values.items() for s, v in per_seed.items()
    ]


def test_summarize_pairs_seeds_and_orders_rows():
    rows = summarize(fake_runs(), order=['kd', 'cwt'])
    assert [r['model'] for r in rows] == [TEACHER, PLAIN, 'kd', 'cwt']
    by = {r['model']: r for r in rows}
    assert by[PLAIN]['mean'] == pytest.approx(88.0)
    assert by[PLAIN]['std'] == pytest.approx(statistics.stdev([88, 90, 86]))
    assert by[TEACHER]['std'] == 0.0 and by[TEACHER]['gain'] is None
    # gains are paired per seed: cwt - plain = 3, 1.5, 3
    assert by['cwt']['gain'] == pytest.approx(7.5 / 3)
    assert by['cwt']['gain_std'] == pytest.approx(
        statistics.stdev([3.0, 1.5, 3.0]))
    # kd has seeds 0 and 2 only: -1 and +2
    assert by['kd']['gain'] == pytest.approx(0.5)
    assert by['kd']['n'] == 2
    assert by['cwt']['time'] == pytest.approx(11.0)


def test_markdown_table_and_png(tmp_path):
    rows = summarize(fake_runs(), order=['cwt', 'kd'])
    table = markdown_table(rows, 'top-1 (%)').splitlines()
    assert len(table) == 2 + len(rows)
    assert all(line.count('|') == 6 for line in table)
    assert table[5].startswith('| kd | 2 | 87.50 +- 0.71 | +0.50 +- 2.12 |')
    png = bar_chart(rows, str(tmp_path / 'chart.png'), 'title', 'top-1')
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_parse_settings():
    assert parse_settings(['digits.epochs=20', 'digits.lr=0.05',
                           'coco.x=abc']) == {
                               'digits': {
                                   'epochs': 20,
                                   'lr': 0.05
                               },
                               'coco': {
                                   'x': 'abc'
                               }
                           }
    with pytest.raises(ValueError):
        parse_settings(['epochs=20'])


def test_quick_digits_cli_writes_report_and_caches(repo_root, tmp_path):
    tool = load_tool(repo_root, 'benchmark_efficacy')
    out = tmp_path / 'eff'
    argv = [
        '--quick', '--seeds', '2', '--methods', 'cwt', 'cwd', '--out-dir',
        str(out)
    ]
    report = tool.main(argv)
    runs = report['digits']['runs']
    assert sorted((r.model, r.seed) for r in runs) == [('cwt', 0), ('cwt', 1),
                                                       (PLAIN, 0), (PLAIN, 1),
                                                       (TEACHER, 0)]
    assert all(math.isfinite(r.value) and 0 <= r.value <= 100 for r in runs)
    assert not any(r.cached for r in runs)

    md = (out / 'results.md').read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith('| ')]
    assert rows[0].startswith('| model |')
    assert [
        ln.split('|')[1].strip() for ln in rows
        if not ln.startswith(('| model', '|---'))
    ] == [TEACHER, PLAIN, 'cwt']
    assert 'cwd: not run' in md
    assert (out / 'digits.png').read_bytes()[:4] == b'\x89PNG'
    data = json.loads((out / 'results.json').read_text())
    assert {'command', 'total_time', 'machine', 'tasks'} <= set(data)
    digits = data['tasks']['digits']
    assert {'settings', 'rows', 'skipped', 'sources', 'time',
            'runs'} <= set(digits)
    assert [r['model'] for r in digits['rows']] == [TEACHER, PLAIN, 'cwt']
    assert digits['rows'][2]['n'] == 2 and digits['rows'][2]['gain'] is \
        not None
    # every run's config is dumped and can be re-run with tools/train.py
    cfg = Config.fromfile(str(out / 'digits' / 'cwt' / 'seed1' / 'config.py'))
    assert cfg.model.type == 'mmkd_channel.FeatureDistiller'
    assert cfg.model.teacher_ckpt.endswith('epoch_1.pth')
    # the digits settings reach the run: CWT's alpha and the weight decay
    assert cfg.model.distill.last_stage.loss.loss_weight == \
        DigitsTask.defaults['cwt_weight']
    assert cfg.optim_wrapper.optimizer.weight_decay == \
        DigitsTask.defaults['weight_decay']

    again = tool.main(argv)  # same configs: every run is reused
    assert all(r.cached for r in again['digits']['runs'])


@pytest.mark.parametrize('task_cls', [CocoTask, CityscapesTask])
def test_dense_tasks_build_shipped_configs(task_cls, tmp_path):
    """Distillation configs of the tiny dense tasks: shipped configs whose
    student is the plain student, with the benchmark's teacher."""
    task = task_cls(str(tmp_path), quick=True)
    teacher = task.build_teacher_cfg()
    teacher_file = str(tmp_path / 'teacher.py')
    teacher.dump(teacher_file)
    plain = task.build_plain_cfg(0)
    for method in task.methods:
        if task.shipped_config(method) is None:
            continue
        cfg = task.build_distill_cfg(method, 0, teacher_file, 'ckpt.pth')
        student = cfg.model.student.to_dict()
        student.pop('_scope_', None)  # as the host config's scope
        assert student == plain.model.to_dict()
        assert cfg.model.teacher == teacher_file
        assert cfg.model.teacher_ckpt == 'ckpt.pth'
        assert cfg.work_dir.endswith(osp.join(method, 'seed0'))
        assert cfg.train_cfg.max_epochs == task.settings['epochs']
        for spec in cfg.model.distill.values():
            conn = spec.get('connector') or {}
            if 'in_channels' in conn:  # fitted to R18 -> R50 widths
                assert conn['in_channels'] in (64, 128, 256, 512)
                assert conn['out_channels'] in (256, 512, 1024, 2048)
