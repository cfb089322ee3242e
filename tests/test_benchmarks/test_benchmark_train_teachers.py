"""benchmark_train.py with a config of several teachers: one evaluation run
per teacher (shared with the configs of the same teacher), the summary's
per-teacher values and what ``--publish`` writes for them.

The Slurm plan and the summary are checked without running anything: the
job scripts are read, the metrics are written into the runs' work
directories as MMEngine writes them.
"""
import json
import os.path as osp
import re
import shutil

import pytest
import yaml
from bench_utils import REPO, load_script
from mmengine.config import Config
from mmkd_bench.model_index import load_pairs
from mmkd_bench.plan import _resolve
from mmkd_bench.publish import update_metafile
from mmkd_bench.runs import read_metrics


def several_teachers_pair():
    """The model-index pair with ``Metadata.Teachers`` (looked up)."""
    return next(p for p in load_pairs(REPO) if p.teachers)


def teacher_specs(pair) -> dict:
    """``name -> (config, ckpt)`` as the pair's config gives them."""
    cfg = Config.fromfile(osp.join(REPO, pair.config))
    return {n: (t['config'], t['ckpt']) for n, t in cfg.model.teachers.items()}


def sharing_pair(pair):
    """A one-teacher pair whose teacher is one of ``pair``'s teachers."""
    configs = {c for c, _ in teacher_specs(pair).values()}
    for p in load_pairs(REPO):
        if p.teachers:
            continue
        cfg = Config.fromfile(osp.join(REPO, p.config))
        if cfg.model.get('teacher') in configs:
            return p
    pytest.skip('no one-teacher config shares a teacher of the two-teacher '
                'config')


def regex(*pairs) -> str:
    return '^(' + '|'.join(re.escape(p.name) for p in pairs) + ')$'


@pytest.fixture
def slurm_plan(tmp_path):
    """The Slurm plan of the two-teacher config and a config sharing one
    of its teachers."""
    tool = load_script('benchmark_train')
    pair = several_teachers_pair()
    other = sharing_pair(pair)
    work = tmp_path / 'bench'
    argv = ['--work-dir', str(work), '--models', regex(pair, other)]
    tool.main(argv + ['--launcher', 'slurm', '--partition', 'p'])
    plan = json.loads((work / 'plan.json').read_text())
    return dict(
        tool=tool, pair=pair, other=other, work=work, argv=argv, plan=plan)


def srun_line(job_file) -> str:
    return next(
        ln for ln in open(job_file).read().splitlines()
        if ln.startswith('srun'))


def test_slurm_plan_evaluates_every_teacher_once(slurm_plan):
    pair, other, work = (slurm_plan[k] for k in ('pair', 'other', 'work'))
    plan = slurm_plan['plan']
    entries = {e['name']: e for e in plan['entries']}
    runs = {r['name']: r for r in plan['runs']}
    specs = teacher_specs(pair)
    assert pair.teachers == list(specs) and len(specs) >= 2
    entry = entries[pair.name]
    assert list(entry['teacher']) == list(specs)
    # a run per teacher, each tools/test.py of its config on its checkpoint
    assert len(set(entry['teacher'].values())) == len(specs)
    for name, (config, ckpt) in specs.items():
        run = runs[entry['teacher'][name]]
        assert run['kind'] == 'test' and run['checkpoint'] == ckpt
        srun = srun_line(work / run['name'] / 'job.sh')
        assert f'tools/test.py {_resolve(config)} {ckpt} --work-dir ' in srun
    # the one-teacher config evaluates the same teacher: the same run
    shared = entries[other.name]['teacher']
    assert isinstance(shared, str) and shared in entry['teacher'].values()
    # one job per run; no job waits for a teacher's evaluation
    submit = (work / 'submit.sh').read_text()
    assert submit.count('sbatch --parsable') == len(runs) == len(specs) + 4
    assert '--dependency' not in submit
    assert all(r['after'] == [] for r in runs.values())
    # the distilled job trains the two-teacher config itself
    srun = srun_line(work / entry['distilled'] / 'job.sh')
    assert f"tools/train.py {osp.join(REPO, pair.config)} --work-dir" in srun


def write_metrics(run_dir, metrics: dict, stamp='20260101_000000') -> None:
    """What ``tools/test.py`` writes: ``<stamp>/<stamp>.json``."""
    d = run_dir / stamp
    d.mkdir(parents=True)
    (d / f'{stamp}.json').write_text(json.dumps(dict(metrics, step=1)))


def test_summary_has_each_teachers_metric(slurm_plan):
    tool, pair, other, work = (
        slurm_plan[k] for k in ('tool', 'pair', 'other', 'work'))
    entries = {e['name']: e for e in slurm_plan['plan']['entries']}
    key, scale = pair.metric_key, pair.metric_scale
    values = {}  # run -> the top-1 written into it
    for i, run in enumerate(r['name'] for r in slurm_plan['plan']['runs']):
        values[run] = 40.0 + 7.25 * i
        write_metrics(work / run, {key: values[run], 'accuracy/top5': 99.0})
    out = tool.main(slurm_plan['argv'] + ['--summary'])
    rows = {r['name']: r for r in out['rows']}
    row, entry = rows[pair.name], entries[pair.name]
    expected = {n: values[r] * scale for n, r in entry['teacher'].items()}
    assert row['teacher'] == pytest.approx(expected)
    assert set(row['all_metrics']['teacher']) == set(pair.teachers)
    for name, run in entry['teacher'].items():
        assert row['all_metrics']['teacher'][name][key] == values[run]
    assert row['gain'] == pytest.approx(
        (values[entry['distilled']] - values[entry['baseline']]) * scale)
    # the one-teacher row keeps a number
    single = rows[other.name]
    assert single['teacher'] == pytest.approx(
        values[entries[other.name]['teacher']] * scale)
    # markdown: "name: value" per teacher in the teacher cell
    md = (work / 'summary.md').read_text()
    line = next(ln for ln in md.splitlines()
                if ln.startswith(f'| {pair.name}'))
    cell = ', '.join(f'{n}: {v:.2f}' for n, v in expected.items())
    assert line.split(' | ')[2] == cell
    other_line = next(ln for ln in md.splitlines()
                      if ln.startswith(f'| {other.name}'))
    assert other_line.split(' | ')[2] == f"{single['teacher']:.2f}"
    # JSON: a dict per teacher
    saved = json.loads((work / 'summary.json').read_text())['rows']
    saved_row = next(r for r in saved if r['name'] == pair.name)
    assert saved_row['teacher'] == pytest.approx(expected)
    # a teacher that wrote nothing shows '-' under its name
    first, run = next(iter(entry['teacher'].items()))
    shutil.rmtree(work / run / '20260101_000000')
    again = tool.main(slurm_plan['argv'] + ['--summary'])
    row = next(r for r in again['rows'] if r['name'] == pair.name)
    assert row['teacher'][first] is None
    md = (work / 'summary.md').read_text()
    assert f'| {first}: -, ' in md


def test_publish_names_the_metafile_teachers(tmp_path):
    pair = several_teachers_pair()
    metafile = tmp_path / 'metafile.yml'
    shutil.copy(osp.join(REPO, pair.metafile), metafile)
    measured = {n: 50.0 + 3.5 * i for i, n in enumerate(pair.teachers)}
    update_metafile(
        str(metafile),
        pair.name,
        'https://example.org/w/x.pth', {pair.metric: 61.234},
        pair.task,
        pair.dataset,
        '2 GPUs',
        teacher=measured)
    model = next(
        m for m in yaml.safe_load(open(metafile))['Models']
        if m['Name'] == pair.name)
    # the published teachers stay as they were
    original = next(
        m
        for m in yaml.safe_load(open(osp.join(REPO, pair.metafile)))['Models']
        if m['Name'] == pair.name)
    assert model['Metadata'] == original['Metadata']
    (result, ) = [
        r for r in model['Results'] if 'Measured by' in r.get('Comment', '')
    ]
    assert result['Metrics'] == {pair.metric: 61.23}
    listed = ', '.join(f'{n} {v:.2f}' for n, v in measured.items())
    assert f'teachers {listed} {pair.metric}.' in result['Comment']
    # a teacher the metafile does not list is an error naming it
    with pytest.raises(KeyError, match=r"\['other'\].*Metadata.Teachers"):
        update_metafile(
            str(metafile),
            pair.name,
            'w.pth', {pair.metric: 1.0},
            pair.task,
            pair.dataset,
            'n',
            teacher={'other': 1.0})


def test_tiny_pytorch_two_teachers_summary_and_publish(tmp_path):
    """The CPU command on the two-teacher config: each teacher's random
    checkpoint evaluated by its own 2-process run and loaded by the
    distilled run; then ``--publish`` into a copy of the metafiles."""
    tool = load_script('benchmark_train')
    pair = several_teachers_pair()
    work = tmp_path / 'bench'
    argv = [
        '--launcher', 'pytorch', '--gpus', '2', '--tiny', '--models',
        regex(pair), '--work-dir',
        str(work)
    ]
    out = tool.main(argv)
    assert set(out['status'].values()) == {'done'}, out['status']
    plan = json.loads((work / 'plan.json').read_text())
    (entry, ) = plan['entries']
    runs = {r['name']: r for r in plan['runs']}
    assert len(runs) == len(pair.teachers) + 2
    distilled_log = open(osp.join(work, entry['distilled'], 'run.log')).read()
    for name in pair.teachers:
        run = runs[entry['teacher'][name]]
        # each teacher: its own seeded random checkpoint, evaluated by
        # tools/test.py in 2 processes, and the one the distiller loads
        assert run['checkpoint'] == osp.join(run['work_dir'],
                                             'random_init.pth')
        log = open(osp.join(run['work_dir'], 'run.log')).read()
        command = log.splitlines()[0]
        assert 'tools/test.py' in command and run['checkpoint'] in command
        assert '--nproc_per_node=2' in command
        assert re.search(r'Epoch\(test\) \[1/1\]', log), name
        assert f"from path: {run['checkpoint']}" in distilled_log
    (row, ) = out['rows']
    key, scale = pair.metric_key, pair.metric_scale
    for name in pair.teachers:
        written = read_metrics(osp.join(work, entry['teacher'][name]))[key]
        assert row['teacher'][name] == pytest.approx(written * scale)
    assert row['distilled'] is not None and row['baseline'] is not None
    # --publish: the student's result, the teachers under their names
    repo = tmp_path / 'repo'
    shutil.copytree(osp.join(REPO, 'configs'), repo / 'configs')
    shutil.copy(osp.join(REPO, 'model-index.yml'), repo / 'model-index.yml')
    published = tool.main(
        argv + ['--publish', '--model-index',
                str(repo / 'model-index.yml')])['published']
    assert [p['name'] for p in published] == [pair.name]
    model = next(
        m for m in yaml.safe_load(open(published[0]['metafile']))['Models']
        if m['Name'] == pair.name)
    (result, ) = [
        r for r in model['Results'] if 'Measured by' in r.get('Comment', '')
    ]
    assert result['Metrics'][pair.metric] == pytest.approx(
        row['distilled'], abs=0.006)
    for name in pair.teachers:
        assert f"{name} {row['teacher'][name]:.2f}" in result['Comment']
    assert list(model['Metadata']['Teachers']) == pair.teachers


def test_same_teacher_config_other_weights_gets_its_own_run(tmp_path):
    """Two teachers of one config file but different checkpoints are two
    evaluations, not one shared run."""
    from mmkd_bench.plan import plan_pairs
    pair = several_teachers_pair()
    specs = teacher_specs(pair)
    first, second = list(specs)[:2]
    config = tmp_path / 'same_config_two_weights.py'
    other_ckpt = 'https://example.org/other_weights.pth'
    config.write_text(f'_base_ = [{osp.join(REPO, pair.config)!r}]\n'
                      f'model = dict(teachers=dict({second}=dict('
                      f'config={specs[first][0]!r}, ckpt={other_ckpt!r})))\n')
    same = type(pair)(name='same', collection='', config=str(config))
    runs, entries = plan_pairs([pair, same], str(tmp_path / 'w'))
    by_name = {r.name: r for r in runs}
    # the shipped config's teachers, then the new config's: its first
    # teacher is shared, its second (same file, other weights) is not
    shipped, mine = entries[0]['teacher'], entries[1]['teacher']
    assert mine[first] == shipped[first]
    assert mine[second] not in shipped.values()
    assert by_name[mine[second]].checkpoint == other_ckpt
    assert by_name[mine[first]].checkpoint == specs[first][1]
    assert by_name[mine[second]].config == by_name[mine[first]].config
