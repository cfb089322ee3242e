"""tools/analysis_tools/plot_distill_curves.py reads MMEngine's scalars."""
import doctest
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.visualization import LocalVisBackend
from PIL import Image

TOOL = 'tools/analysis_tools/plot_distill_curves.py'

# Lines as MMEngine 0.10.7 wrote them in a run of
# tests/test_runner/test_cwt_frcnn.py (epoch-based; a validation line
# after epoch 1, with `step` = epoch).
REAL_LINES = [
    '{"lr": 2e-05, "data_time": 0.0061, "loss": 2.6338541507720947, '
    '"loss_rpn_cls": 0.6931228637695312, "loss_rpn_bbox": '
    '0.04512124881148338, "loss_cls": 1.3962538242340088, "acc": 4.6875, '
    '"loss_bbox": 0.2912336587905884, "loss_distill_fpn": '
    '0.20812244713306427, "time": 4.525482892990112, "epoch": 1, "iter": 1, '
    '"step": 1}',
    '{"lr": 6.004008016032065e-05, "data_time": 0.0088, "loss": '
    '2.261951208114624, "loss_rpn_cls": 0.6936805844306946, '
    '"loss_rpn_bbox": 0.03269997239112854, "loss_cls": 1.3913522958755493, '
    '"acc": 0.48828125, "loss_bbox": 0.03058195859193802, '
    '"loss_distill_fpn": 0.11363624781370163, "time": 5.741278886795044, '
    '"epoch": 1, "iter": 2, "step": 2}',
    '{"coco/bbox_mAP": 0.007, "coco/bbox_mAP_50": 0.035, "coco/bbox_mAP_75": '
    '0.0, "coco/bbox_mAP_s": 0.0, "coco/bbox_mAP_m": 0.029, '
    '"coco/bbox_mAP_l": -1.0, "data_time": 0.0076, "time": 3.277, '
    '"step": 1}',
]


@pytest.fixture(scope='module')
def tool(repo_root):
    spec = importlib.util.spec_from_file_location('plot_distill_curves',
                                                  osp.join(repo_root, TOOL))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(work_dir, timestamp, records):
    """Write ``records`` with MMEngine's own LocalVisBackend."""
    backend = LocalVisBackend(
        save_dir=osp.join(work_dir, timestamp, 'vis_data'))
    for rec in records:
        rec = dict(rec)
        backend.add_scalars(rec, step=rec.pop('step'))
    return osp.join(work_dir, timestamp, 'vis_data', 'scalars.json')


def train_records(first, last, scale=1.0):
    return [
        dict(
            lr=0.01,
            loss=scale * (3.0 + 0.6 / i),
            loss_cls=scale * 2.0,
            loss_bbox=scale * 1.0,
            loss_distill_fpn=scale * 0.4 / i,
            loss_distill_head=scale * 0.2 / i,
            time=0.5,
            epoch=1,
            iter=i,
            step=i) for i in range(first, last + 1)
    ]


def test_real_format(tool, tmp_path):
    run = tmp_path / 'work' / '20261124_055543' / 'vis_data'
    run.mkdir(parents=True)
    (run / 'scalars.json').write_text('\n'.join(REAL_LINES) + '\n')
    series = tool.read_scalars(tool.find_scalar_files(str(tmp_path / 'work')))
    assert series['loss_distill_fpn'] == {
        1: 0.20812244713306427,
        2: 0.11363624781370163
    }
    assert not any(k.startswith('coco/') for k in series)  # validation
    groups = tool.split_losses(series)
    assert groups == dict(
        task=['loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'],
        distill=['loss_distill_fpn'],
        total=['loss'])
    task = tool.summed(series, groups['task'])
    # total = task + distill, as MMEngine's parse_losses sums them
    for step in (1, 2):
        assert task[step] + series['loss_distill_fpn'][step] == \
            pytest.approx(series['loss'][step], rel=1e-6)


def test_latest_run_and_all_runs(tool, tmp_path):
    work = str(tmp_path / 'work')
    first = write_run(work, '20240101_000000', train_records(1, 5))
    latest = write_run(work, '20240102_000000', train_records(4, 8, scale=2.0))
    assert tool.find_scalar_files(work) == [latest]
    assert tool.find_scalar_files(work, all_runs=True) == [first, latest]
    assert tool.find_scalar_files(osp.dirname(osp.dirname(first))) == [first]
    joined = tool.read_scalars(tool.find_scalar_files(work, True))
    assert sorted(joined['loss_cls']) == list(range(1, 9))
    assert joined['loss_cls'][3] == 2.0 and joined['loss_cls'][4] == 4.0
    with pytest.raises(FileNotFoundError, match='no scalars.json'):
        tool.find_scalar_files(str(tmp_path / 'empty'))


def test_hierarchical_keys_and_mmseg_names(tool, tmp_path):
    path = tmp_path / 'scalars.json'
    lines = [
        dict(
            **{
                'train/lr': 0.01,
                'train/loss': 1.5,
                'train/decode.loss_ce': 1.0,
                'train/aux.loss_ce': 0.4,
                'train/loss_distill_logits': 0.1
            },
            iter=10,
            step=10),
        {
            'val/mIoU': 3.2,
            'iter': 10,
            'step': 10
        },
    ]
    path.write_text('\n'.join(json.dumps(d) for d in lines))
    series = tool.read_scalars([str(path)])
    groups = tool.split_losses(series)
    assert groups['task'] == ['decode.loss_ce', 'aux.loss_ce']
    assert groups['distill'] == ['loss_distill_logits']
    assert 'mIoU' not in series and 'val/mIoU' not in series


def test_total_label_follows_what_loss_is(tool, tmp_path):
    """``loss`` is drawn as the total only where it is the sum of the terms;
    in an mmpretrain log from before the head's ``loss`` was renamed it is
    the cross-entropy and is drawn with the task terms."""

    def records(with_cls):
        recs = []
        for i in (1, 2, 3):
            ce, distill = 2.3 / i, 1.2 / i
            rec = dict(loss_distill_last_stage=distill, iter=i, step=i)
            if with_cls:
                rec.update(loss=ce + distill, loss_cls=ce)
            else:
                rec.update(loss=ce)
            recs.append(rec)
        return recs

    old = tool.read_scalars(
        [write_run(str(tmp_path / 'old'), 'r', records(False))])
    groups = tool.plot(old, str(tmp_path / 'old.png'), 'old')
    assert groups['task'] == ['loss'] and groups['total'] == []
    new = tool.read_scalars(
        [write_run(str(tmp_path / 'new'), 'r', records(True))])
    groups = tool.plot(new, str(tmp_path / 'new.png'), 'new')
    assert groups['task'] == ['loss_cls'] and groups['total'] == ['loss']


def test_cli_writes_png(repo_root, tmp_path):
    work = str(tmp_path / 'work')
    write_run(work, '20240101_000000', train_records(1, 40))
    out = tmp_path / 'curves.png'
    proc = subprocess.run(
        [sys.executable, TOOL, work, '--out',
         str(out), '--smooth', '5'],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "distill terms ['loss_distill_fpn', 'loss_distill_head']" in (
        proc.stdout + proc.stderr)
    with Image.open(out) as im:
        assert im.size == (900, 750)
        pixels = np.asarray(im.convert('RGB'), dtype=np.float64)
    assert pixels.std() > 0


def test_smooth(tool):
    np.testing.assert_allclose(
        tool.smooth(np.array([2.0, 4.0, 6.0, 8.0]), 3), [2, 3, 4, 6])


def test_docstring_examples_run(tool):
    result = doctest.testmod(tool)
    assert result.attempted > 0 and result.failed == 0
