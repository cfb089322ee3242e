"""benchmark_train.py: model-index pairs as Slurm jobs or local runs,
their summary and their publication.

The local path runs the real command (``--launcher pytorch``, 2 gloo
processes per run) on tiny generated data for the four CWT tasks; the Slurm
path writes the job scripts, whose commands are checked (no Slurm here).
"""
import hashlib
import json
import math
import os.path as osp
import re
import shutil

import pytest
import torch
import yaml
from bench_utils import REPO, load_script
from mmengine.config import Config
from mmkd_bench.model_index import METRICS, load_pairs
from mmkd_bench.runs import read_metrics

# one CWT config per task of the paper, looked up in the model index
TASKS = ('Object Detection', 'Instance Segmentation', 'Semantic Segmentation',
         'Image Classification')


def first_cwt_per_task() -> list:
    found = {}
    for p in load_pairs(REPO):
        if p.collection == 'CWT':
            found.setdefault(p.task, p)
    return [found[t] for t in TASKS]


def names_regex(pairs) -> str:
    return '^(' + '|'.join(re.escape(p.name) for p in pairs) + ')$'


def teacher_runs(entry: dict) -> list:
    """The teacher runs of a plan entry (a dict of them with several)."""
    t = entry.get('teacher')
    return list(t.values()) if isinstance(t, dict) else [t] if t else []


def test_model_index_pairs_have_configs_and_known_metrics():
    pairs = load_pairs(REPO)
    assert pairs and len({p.name for p in pairs}) == len(pairs)
    for p in pairs:
        assert osp.isfile(osp.join(REPO, p.config)), p.config
        assert p.metric in METRICS, (p.name, p.metric)
    # the CWT paper publishes a gain per task (papers.md)
    gains = {p.task: p.published['gain'] for p in first_cwt_per_task()}
    assert gains == {
        'Object Detection': 3.9,
        'Instance Segmentation': 2.8,
        'Semantic Segmentation': 4.66,
        'Image Classification': 3.28
    }


def test_published_numbers_from_both_metafile_forms(tmp_path):
    meta = dict(Models=[
        dict(
            Name='gain_form',
            Config='a.py',
            Metadata=dict(Teacher=dict(Config='t.py')),
            Results=[
                dict(
                    Task='Object Detection',
                    Dataset='COCO',
                    Metrics={'box AP gain': 3.9})
            ]),
        dict(
            Name='absolute_form',
            Config='b.py',
            Metadata=dict(
                Teacher=dict(Metrics={'mIoU': 79.76}),
                Student=dict(Metrics={'mIoU': 74.87})),
            Results=[
                dict(
                    Task='Semantic Segmentation',
                    Dataset='Cityscapes',
                    Metrics={'mIoU': 75.54})
            ]),
        dict(
            Name='comment_form',
            Config='d.py',
            Comment='The paper reports +2.8 mask mAP over its baseline.',
            Metadata=dict(
                Teacher={},
                Student=dict(Metrics={
                    'box AP': 39.2,
                    'mask AP': 35.4
                }))),
        dict(
            Name='not_published',
            Config='e.py',
            Comment='No published result; a paper reports +3.4 mAP '
            'elsewhere.',
            Metadata={
                'Teacher': {},
                'Training Data': 'CIFAR-100'
            }),
        dict(
            Name='two_teachers',
            Config='f.py',
            Metadata=dict(
                Teachers=dict(
                    cnn=dict(Metrics={'Top 1 Accuracy': 76.55}),
                    vit=dict(Metrics={'Top 5 Accuracy': 95.06})),
                Student=dict(Metrics={'Top 1 Accuracy': 69.9}))),
        dict(Name='no_teacher', Config='c.py', Metadata={}),
    ])
    (tmp_path / 'm.yml').write_text(yaml.safe_dump(meta))
    (tmp_path / 'model-index.yml').write_text('Import:\n  - m.yml\n')
    pairs = {p.name: p for p in load_pairs(str(tmp_path))}
    assert set(pairs) == {
        'gain_form', 'absolute_form', 'comment_form', 'not_published',
        'two_teachers'
    }
    # several teachers: each one's published number of the pair's metric
    two = pairs['two_teachers']
    assert two.teachers == ['cnn', 'vit'] and two.metric == 'Top 1 Accuracy'
    assert two.published['teacher'] == {'cnn': 76.55, 'vit': None}
    assert not pairs['gain_form'].teachers
    g, a = pairs['gain_form'], pairs['absolute_form']
    c, n = pairs['comment_form'], pairs['not_published']
    assert (c.metric, c.task,
            c.published['gain']) == ('mask AP', 'Instance Segmentation', 2.8)
    assert c.published['student'] == 35.4
    assert (n.metric, n.task,
            n.published['gain']) == ('Top 1 Accuracy', 'Image Classification',
                                     None)
    assert (g.metric, g.metric_key, g.metric_scale) == ('box AP',
                                                        'coco/bbox_mAP', 100)
    assert g.published['gain'] == 3.9 and g.published['distilled'] is None
    assert a.metric_key == 'mIoU'
    assert a.published['gain'] == pytest.approx(75.54 - 74.87)
    assert a.published['teacher'] == 79.76
    assert load_pairs(str(tmp_path), 'abs')[0].name == 'absolute_form'


def test_slurm_job_scripts(tmp_path):
    tool = load_script('benchmark_train')
    work = tmp_path / 'bench'
    argv = [
        '--launcher', 'slurm', '--partition', 'gpuq', '--work-dir',
        str(work), '--gpus', '16', '--amp', '--auto-scale-lr'
    ]
    out = tool.main(argv)
    plan = json.loads((work / 'plan.json').read_text())
    runs = {r['name']: r for r in plan['runs']}
    pairs = load_pairs(REPO)
    assert [e['name'] for e in plan['entries']] == [p.name for p in pairs]
    # configs that inherit one baseline (or share a teacher) share its run
    baselines = {e['baseline'] for e in plan['entries']}
    assert len(baselines) < len(pairs)
    teachers = {t for e in plan['entries'] for t in teacher_runs(e)}
    assert len(runs) == len(baselines) + len(pairs) + len(teachers)
    submit = (work / 'submit.sh').read_text()
    assert out['submit'] == str(work / 'submit.sh')
    assert submit.count('sbatch --parsable') == len(runs)
    for e in plan['entries']:
        entry_config = osp.join(REPO, e['config'])
        job = (work / e['distilled'] / 'job.sh').read_text()
        assert '#SBATCH --partition=gpuq' in job
        # 16 GPUs: 2 nodes of 8
        assert '#SBATCH --nodes=2' in job and '#SBATCH --ntasks=16' in job
        assert '#SBATCH --gres=gpu:8' in job
        srun = next(ln for ln in job.splitlines() if ln.startswith('srun'))
        assert f'tools/train.py {entry_config} --work-dir ' in srun
        assert srun.endswith('--amp --cfg-options auto_scale_lr.enable=True '
                             '--launcher=slurm')
        # the config file itself (full scale) runs, not a copy
        assert runs[e['distilled']]['config'] == entry_config
        assert teacher_runs(e), e['name']
        for t_run in teacher_runs(e):
            teacher = (work / t_run / 'job.sh').read_text()
            t_srun = next(ln for ln in teacher.splitlines()
                          if ln.startswith('srun'))
            assert 'tools/test.py' in t_srun and 'https://' in t_srun
            assert '--amp' not in t_srun
        # the baseline trains the distiller's student, nothing else
        baseline = Config.fromfile(runs[e['baseline']]['config'])
        student = Config.fromfile(entry_config).model.student
        assert baseline.model.type == student.type != 'FeatureDistiller'
        assert baseline.model.backbone == student.backbone
    # resumable: a finished run leaves the next submit.sh
    from mmkd_bench.runs import Run
    first = Run(**runs[plan['entries'][0]['distilled']])
    first.mark_finished(1.0)
    tool.main(argv)
    submit2 = (work / 'submit.sh').read_text()
    assert submit2.count('sbatch --parsable') == len(runs) - 1
    assert str(first.work_dir) not in submit2


def test_slurm_efficacy_jobs_wait_for_the_teacher(tmp_path):
    tool = load_script('benchmark_train')
    tool.main([
        '--task', 'digits', '--quick', '--seeds', '1', '--methods', 'cwt',
        '--launcher', 'slurm', '--partition', 'p', '--gpus', '1', '--work-dir',
        str(tmp_path)
    ])
    lines = (tmp_path / 'digits' / 'submit.sh').read_text().splitlines()
    sbatch = [ln for ln in lines if 'sbatch' in ln]
    assert len(sbatch) == 3  # teacher, plain, cwt
    teacher_var = sbatch[0].split('=')[0]
    assert 'teacher' in sbatch[0] and '--dependency' not in sbatch[0]
    assert f'--dependency=afterok:${teacher_var}' in sbatch[2]
    assert 'cwt' in sbatch[2] and '--dependency' not in sbatch[1]


@pytest.fixture(scope='module')
def tiny_benchmark(tmp_path_factory):
    """The CPU command: 4 CWT tasks, tiny data, 2 gloo processes per run."""
    tool = load_script('benchmark_train')
    work = tmp_path_factory.mktemp('bench_tiny')
    pairs = first_cwt_per_task()
    argv = [
        '--launcher', 'pytorch', '--gpus', '2', '--tiny', '--models',
        names_regex(pairs), '--work-dir',
        str(work)
    ]
    out = tool.main(argv)
    return dict(tool=tool, work=work, pairs=pairs, argv=argv, out=out)


def test_tiny_pytorch_runs_and_summary(tiny_benchmark):
    tool, work = tiny_benchmark['tool'], tiny_benchmark['work']
    status = tiny_benchmark['out']['status']
    assert len(status) == 12  # 4 x (teacher, baseline, distilled)
    assert set(status.values()) == {'done'}, status
    plan = json.loads((work / 'plan.json').read_text())
    task_of = {p.name: p.task for p in tiny_benchmark['pairs']}
    per_proc = {}  # run -> iterations per process of its one epoch
    for e in plan['entries']:
        # 4 training images, batch 1 per process (detectors) or 2, so 2
        # processes take 2 (1) iterations where one process would take 4 (2)
        n = 2 if 'Detection' in task_of[e['name']] or 'Instance' in task_of[
            e['name']] else 1
        per_proc[e['baseline']] = per_proc[e['distilled']] = n
    for run in plan['runs']:
        log = open(osp.join(run['work_dir'], 'run.log')).read()
        command = log.splitlines()[0]
        assert 'torch.distributed.run' in command
        assert '--nproc_per_node=2' in command and '--launcher pytorch' in (
            command)
        assert 'Distributed training: True' in log
        if run['kind'] == 'train':
            n = per_proc[run['name']]
            assert f'Epoch(train) [1][{n}/{n}]' in log, run['name']
        else:  # 2 (classifiers: 4) validation images, halved by 2 ranks
            assert re.search(r'Epoch\(test\) \[1/1\]', log), run['name']
    for e in plan['entries']:
        metrics = read_metrics(str(work / e['distilled']))
        assert metrics, e['name']
    rows = {r['name']: r for r in tiny_benchmark['out']['rows']}
    for pair in tiny_benchmark['pairs']:
        r = rows[pair.name]
        for role in ('teacher', 'baseline', 'distilled'):
            assert r[role] is not None and math.isfinite(r[role]), (pair, role)
        assert r['gain'] == pytest.approx(r['distilled'] - r['baseline'])
        assert r['published']['gain'] == pair.published['gain']
        assert r['within_tolerance'] == (
            abs(r['gain'] - pair.published['gain']) <= 1.0)
        key = pair.metric_key
        raw = read_metrics(
            str(work / plan['entries'][[e['name'] for e in plan['entries']
                                        ].index(pair.name)]['distilled']))[key]
        assert r['distilled'] == pytest.approx(raw * pair.metric_scale)
    # --summary alone gives the same table from the files
    again = tool.main(tiny_benchmark['argv'] + ['--summary'])
    assert [r['distilled'] for r in again['rows']
            ] == [r['distilled'] for r in tiny_benchmark['out']['rows']]
    md = (work / 'summary.md').read_text()
    table = [ln for ln in md.splitlines() if ln.startswith('| ')]
    assert len(table) == 1 + 4  # header and one row per pair
    # rerunning skips every finished run
    rerun = tool.main(tiny_benchmark['argv'])
    assert set(rerun['status'].values()) == {'finished before'}


def test_publish_exports_sha_named_students(tiny_benchmark, tmp_path):
    tool = tiny_benchmark['tool']
    repo = tmp_path / 'repo'
    shutil.copytree(osp.join(REPO, 'configs'), repo / 'configs')
    shutil.copy(osp.join(REPO, 'model-index.yml'), repo / 'model-index.yml')
    out = tool.main(tiny_benchmark['argv'] + [
        '--publish', '--model-index',
        str(repo / 'model-index.yml'), '--base-url', 'https://example.org/w'
    ])
    assert len(out['published']) == 4
    for p in out['published']:
        path = p['checkpoint']
        digest = hashlib.sha256(open(path, 'rb').read()).hexdigest()
        assert osp.basename(path) == f"{p['name']}_{digest[:8]}.pth"
        state = torch.load(path, map_location='cpu', weights_only=True)
        keys = list(state['state_dict'])
        assert keys and not any(
            k.startswith(('teacher.', 'student.', 'distill')) for k in keys)
        meta = yaml.safe_load(open(p['metafile']))
        model = next(m for m in meta['Models'] if m['Name'] == p['name'])
        assert model['Weights'] == 'https://example.org/w/' + \
            osp.basename(path)
        measured = [
            r for r in model['Results']
            if r.get('Comment', '').startswith('Measured by')
        ]
        assert len(measured) == 1
        row = next(r for r in out['rows'] if r['name'] == p['name'])
        (value, ) = measured[0]['Metrics'].values()
        assert value == pytest.approx(row['distilled'], abs=0.006)
        # the published numbers stay (CWT's metafiles publish none)
        original = yaml.safe_load(
            open(osp.join(REPO, osp.relpath(p['metafile'], str(repo)))))
        before = next(m for m in original['Models']
                      if m['Name'] == p['name']).get('Results', [])
        assert len(model['Results']) == len(before) + 1
        assert all(r in model['Results'] for r in before)


def test_read_metrics_takes_the_first_object_of_a_line(tmp_path):
    """Two ranks of a host test.py writing one ``<timestamp>.json`` can
    leave the tail of the longer write after the JSON object."""
    stamp = tmp_path / '20260101_000000'
    stamp.mkdir()
    (stamp / '20260101_000000.json').write_text(
        '{"accuracy/top1": 25.0, "data_time": 0.0075, "time": 0.81}}')
    assert read_metrics(str(tmp_path)) == {'accuracy/top1': 25.0}
    (stamp / '20260101_000000.json').write_text('{"accuracy/top1": 2')
    assert read_metrics(str(tmp_path)) == {}
