"""The efficacy tasks train, skip finished runs and report paired
statistics and readable charts."""
import json
import math
import os.path as osp
import statistics

import pytest
from conftest import load_script
from mmengine.config import Config
from mmkd_bench.efficacy import parse_settings
from mmkd_bench.efficacy_report import markdown_table, summarize
from mmkd_bench.plots import bar_chart, y_limits
from mmkd_bench.stats import paired_stats
from mmkd_bench.task_base import PLAIN, TEACHER, VARIANTS, RunResult
from mmkd_bench.tasks import CityscapesTask, CocoTask, DigitsTask


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
    paired = by['cwt']['paired']
    assert paired['t'] == pytest.approx(2.5 / (paired['std'] / 3**0.5))
    assert (paired['wins'], paired['ties'], paired['losses']) == (3, 0, 0)
    # kd has seeds 0 and 2 only: -1 and +2
    assert by['kd']['gain'] == pytest.approx(0.5)
    assert by['kd']['n'] == 2
    assert by['cwt']['time'] == pytest.approx(11.0)


def test_paired_stats_against_textbook_values():
    # t = 2.262 with 9 degrees of freedom is the two-sided 5% point
    base = [-1.0, 1.0] * 5  # mean 0
    mu = 2.262157 * statistics.stdev(base) / 10**0.5
    diffs = [b + mu for b in base]
    s = paired_stats(diffs)
    assert s['t'] == pytest.approx(2.262157, rel=1e-6)
    assert s['p'] == pytest.approx(0.05, abs=1e-5)
    # t = 1 with 1 degree of freedom (Cauchy): p = 0.5
    assert paired_stats([0.0, 2.0])['p'] == pytest.approx(0.5)
    one = paired_stats([1.0])
    assert one['t'] is None and one['wins'] == 1 and one['std'] is None


def test_markdown_table_and_png(tmp_path):
    rows = summarize(fake_runs(), order=['cwt', 'kd'])
    table = markdown_table(rows, 'top-1 (%)').splitlines()
    assert len(table) == 2 + len(rows)
    assert all(line.count('|') == 9 for line in table)
    # kd: diffs -1, +2: t = 0.5 / (stdev / sqrt 2) = 0.333, 1 win of 2
    assert table[5].startswith('| kd | 2 | 87.50 +- 0.71 | +0.50 +- 2.12 | '
                               '0.33 | ')
    assert '| 1 / 2 |' in table[5]
    # the y axis starts at zero and leaves room above the highest seed
    low, high = y_limits(rows)
    assert low == 0.0 and high > 98.0
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


def test_quick_digits_task_writes_report_and_skips_finished(tmp_path):
    tool = load_script('benchmark_train')
    out = tmp_path / 'eff'
    argv = [
        '--task', 'digits', '--quick', '--seeds', '2', '--methods', 'cwt',
        'cwd', '--work-dir',
        str(out)
    ]
    report = tool.main(argv)
    runs = report['digits']['runs']
    assert sorted((r.model, r.seed) for r in runs) == [('cwt', 0), ('cwt', 1),
                                                       (PLAIN, 0), (PLAIN, 1),
                                                       (TEACHER, 0)]
    assert all(math.isfinite(r.value) and 0 <= r.value <= 100 for r in runs)
    assert set(report['digits']['status'].values()) == {'done'}

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
    cwt_row = digits['rows'][2]
    assert cwt_row['n'] == 2 and cwt_row['paired']['n'] == 2
    # every run's config is dumped and can be re-run with tools/train.py
    cfg = Config.fromfile(str(out / 'digits' / 'cwt' / 'seed1' / 'config.py'))
    assert cfg.model.type == 'mmkd_channel.FeatureDistiller'
    assert cfg.model.teacher_ckpt.endswith('epoch_1.pth')
    # the digits settings reach the run: CWT's alpha and the weight decay
    assert cfg.model.distill.last_stage.loss.loss_weight == \
        DigitsTask.defaults['cwt_weight']
    assert cfg.optim_wrapper.optimizer.weight_decay == \
        DigitsTask.defaults['weight_decay']
    # the run's log (configs, losses) is in its work dir, not the terminal
    log = (out / 'digits' / 'cwt' / 'seed1' / 'run.log').read_text()
    assert 'distill' in log and 'Config:' in log

    again = tool.main(argv)  # same configs: every run is skipped
    assert set(again['digits']['status'].values()) == {'finished before'}
    assert [r.value
            for r in again['digits']['runs']] == [r.value for r in runs]
    summary = tool.main(argv + ['--summary'])
    assert summary['digits']['status'] == {}


def test_a_variant_adds_distiller_arguments(tmp_path, monkeypatch):
    """A method variant is one entry of VARIANTS: its extra arguments
    reach the distiller config, the rest is the method's."""
    monkeypatch.setitem(VARIANTS, 'cwt_untruncated',
                        ('cwt', dict(truncate_teacher=False)))
    task = DigitsTask(str(tmp_path), quick=True)
    teacher = task.build_teacher_cfg()
    teacher.dump(str(tmp_path / 'teacher.py'))
    base = task.build_distill_cfg('cwt', 0, str(tmp_path / 'teacher.py'),
                                  'ckpt.pth')
    variant = task.build_distill_cfg('cwt_untruncated', 0,
                                     str(tmp_path / 'teacher.py'), 'ckpt.pth')
    assert variant.model.truncate_teacher is False
    assert base.model.get('truncate_teacher', True) is not False
    assert variant.model.distill == base.model.distill
    assert variant.work_dir.endswith(osp.join('cwt_untruncated', 'seed0'))


@pytest.mark.parametrize('task_cls', [CocoTask, CityscapesTask])
def test_dense_tasks_build_shipped_configs(task_cls, tmp_path):
    """Distillation configs of the tiny dense tasks: shipped configs whose
    student is the plain student, with the benchmark's teacher."""
    task = task_cls(str(tmp_path), quick=True)
    teacher = task.build_teacher_cfg()
    teacher_file = str(tmp_path / 'teacher.py')
    teacher.dump(teacher_file)
    plain = task.build_plain_cfg(0)
    for method in task.shipped_configs():
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
