"""The host toolboxes' own analysis and publishing tools on this project's
logs, configs and checkpoints, run as a user would: mmdet's, mmpretrain's
and mmseg's ``analyze_logs.py`` on a training run's json log, mmpretrain's
``browse_dataset.py`` visualizer on every shipped classification config,
mmdet's and mmpretrain's ``test.py`` on an exported student against our
``test.py --out``, mmdet's ``confusion_matrix.py`` on that pickle, and
``publish_model.py`` (which must not unpickle code)."""
import glob
import os.path as osp
import pickle
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmkd_toy import REPO
from test_host_entry_points import host_tool, run, shipped_configs

from mmkd_channel.testing import make_imagenet
from mmkd_channel.testing.tiny_configs import tiny_cls_config

EXPORT = osp.join(REPO, 'tools', 'model_converters', 'export_student.py')
OUR_TEST = osp.join(REPO, 'tools', 'test.py')

# mmdet's and mmseg's analyze_logs.py import seaborn at the top (for the
# plot style only); the environment has none, so a stand-in provides
# ``set_style``.
# mmpretrain's imports it only when asked for a style.
ANALYZE_LOGS = """
import runpy, sys, types
sys.modules.setdefault(
    'seaborn', types.SimpleNamespace(set_style=lambda *a, **k: None))
import matplotlib
matplotlib.use('Agg')
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def json_log(work_dir: str) -> str:
    (log, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', '2*.json'))
    return log


@pytest.mark.parametrize('host', ['mmdet', 'mmpretrain', 'mmseg'])
def test_analyze_logs_reads_our_json_log(host, mmdet_trained, tmp_path):
    log = json_log(mmdet_trained['work_dir'])
    tool = host_tool(host, 'analysis_tools/analyze_logs')
    png = tmp_path / 'curve.png'
    # mmseg's tool only plots, without a sub-command
    plot = [] if host == 'mmseg' else ['plot_curve']
    proc = run(['-c', ANALYZE_LOGS, tool] + plot +
               [log, '--keys', 'loss', 'loss_distill_fpn', '--out',
                str(png)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'metric is loss_distill_fpn' in proc.stdout
    assert png.stat().st_size > 0
    if host != 'mmseg':
        proc = run(['-c', ANALYZE_LOGS, tool, 'cal_train_time', log], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert 'average iter time' in proc.stdout


def test_mmpretrain_browse_dataset_builds_our_visualizer():
    """mmpretrain's browse_dataset.py pops ``type`` and calls
    ``UniversalVisualizer(**cfg.visualizer, ...)``: a ``_scope_`` key (which
    an ``mmpretrain::`` base adds) is an unexpected keyword argument."""
    from mmpretrain.visualization import UniversalVisualizer
    tool = host_tool('mmpretrain', 'visualization/browse_dataset')
    with open(tool) as f:
        assert '**cfg.visualizer' in f.read()  # what this test mirrors
    checked = 0
    for i, path in enumerate(shipped_configs()):
        cfg = Config.fromfile(path)
        if cfg.default_scope != 'mmpretrain':
            continue
        assert cfg.visualizer.pop('type') == 'UniversalVisualizer'
        UniversalVisualizer(**cfg.visualizer, name=f'browse_{i}')
        checked += 1
    assert checked >= 5


@pytest.fixture(scope='module')
def mobilenet_tiny(tmp_path_factory) -> str:
    """The shipped ResNet-50 -> MobileNetV1 CWT config on tiny ImageNet-style
    data (32 px, 2 classes), dumped to a file."""
    tmp = tmp_path_factory.mktemp('mobilenet')
    data = make_imagenet(
        tmp / 'data',
        num_classes=2,
        per_class_train=1,
        per_class_val=1,
        img_size=(32, 32))
    cfg = Config.fromfile(
        next(p for p in shipped_configs() if 'mobilenet-v1' in p
             and Config.fromfile(p).model.type.endswith('FeatureDistiller')))
    tiny_cls_config(cfg, data, str(tmp / 'work'), img_size=32)
    cfg_path = str(tmp / 'tiny.py')
    cfg.dump(cfg_path)
    return cfg_path


def test_mmpretrain_browse_dataset_reaches_drawing(mobilenet_tiny, tmp_path):
    """A tiny run of the tool itself gets past building the dataset and
    the visualizer (it then stops in mmpretrain's own drawing code, which
    calls matplotlib's ``adjust_bbox`` without the ``renderer`` newer
    matplotlib requires)."""
    proc = run([
        host_tool('mmpretrain', 'visualization/browse_dataset'),
        mobilenet_tiny, '-o',
        str(tmp_path / 'out'), '-n', '1', '--mode', 'original'
    ], tmp_path)
    out = proc.stdout + proc.stderr
    assert '_scope_' not in out, out[-3000:]
    assert proc.returncode == 0 or 'adjust_bbox' in out, out[-3000:]


def test_mmpretrain_test_py_on_exported_student(mobilenet_tiny, tmp_path):
    """mmpretrain's test.py scores every image with the exported MobileNetV1
    student exactly as our tools/test.py does with the distiller; the
    student config keeps the one ``custom_imports`` its backbone needs."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(mobilenet_tiny)
    cfg.work_dir = str(tmp_path / 'work')
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    # untrained: the student built by test.py starts from another random
    # initialisation, so equal scores prove the export's weights load
    Runner.from_cfg(cfg).save_checkpoint(
        cfg.work_dir,
        'epoch_0.pth',
        save_optimizer=False,
        save_param_scheduler=False)
    ckpt = osp.join(cfg.work_dir, 'epoch_0.pth')
    proc = run([EXPORT, ckpt, str(tmp_path / 'student.pth')], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    student_cfg = str(tmp_path / 'student.py')
    assert Config.fromfile(student_cfg).custom_imports.imports == [
        'mmkd_channel'
    ]
    _, student = predict_out(
        host_tool('mmpretrain', 'test'), student_cfg,
        str(tmp_path / 'student.pth'), tmp_path, 'student')
    _, distiller = predict_out(OUR_TEST, mobilenet_tiny, ckpt, tmp_path,
                               'distiller')
    assert len(student) == len(distiller) == 2
    for a, b in zip(student, distiller):
        assert a['img_path'] == b['img_path']
        np.testing.assert_array_equal(
            np.asarray(a['pred_score']), np.asarray(b['pred_score']))


@pytest.fixture(scope='module')
def mmdet_student(mmdet_trained, tmp_path_factory) -> dict:
    """The mmdet-trained distiller's student, exported."""
    tmp = tmp_path_factory.mktemp('student')
    out = str(tmp / 'student.pth')
    proc = run([EXPORT, mmdet_trained['checkpoint'], out], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(checkpoint=out, cfg=str(tmp / 'student.py'))


def predict_out(tool: str, cfg: str, ckpt: str, tmp_path, name: str) -> tuple:
    """``tool CONFIG CKPT --out X.pkl``: the pickle's path and content."""
    out = str(tmp_path / f'{name}.pkl')
    proc = run(
        [tool, cfg, ckpt, '--out', out, '--work-dir',
         str(tmp_path / name)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out, 'rb') as f:  # written by this test
        return out, pickle.load(f)


def test_mmdet_test_py_on_exported_student(mmdet_trained, mmdet_student,
                                           tmp_path):
    """mmdet's test.py predicts with the exported student exactly what our
    tools/test.py predicts with the distillation config and checkpoint;
    mmdet's confusion_matrix.py reads our ``--out`` pickle."""
    _, student = predict_out(
        host_tool('mmdet', 'test'), mmdet_student['cfg'],
        mmdet_student['checkpoint'], tmp_path, 'student')
    pkl, distiller = predict_out(OUR_TEST, mmdet_trained['cfg'],
                                 mmdet_trained['checkpoint'], tmp_path,
                                 'distiller')
    assert len(student) == len(distiller) > 0
    for a, b in zip(student, distiller):
        assert a['img_id'] == b['img_id']
        for key in ('bboxes', 'scores', 'labels'):
            np.testing.assert_array_equal(
                np.asarray(a['pred_instances'][key]),
                np.asarray(b['pred_instances'][key]))
    proc = run([
        host_tool('mmdet', 'analysis_tools/confusion_matrix'),
        mmdet_trained['cfg'], pkl,
        str(tmp_path / 'cm')
    ], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.getsize(tmp_path / 'cm' / 'confusion_matrix.png') > 0


def test_publish_model(mmdet_trained, mmdet_student, tmp_path):
    """publish_model.py reads with torch's weights-only loader: it refuses
    the distillation checkpoint (MMEngine's pickled ``HistoryBuffer``
    statistics, in any MMEngine training checkpoint) rather than executing
    anything, and publishes the exported student."""
    tool = host_tool('mmdet', 'model_converters/publish_model')
    proc = run(
        [tool, mmdet_trained['checkpoint'],
         str(tmp_path / 'distiller.pth')], tmp_path)
    assert proc.returncode != 0
    assert 'Weights only load failed' in proc.stderr
    assert not glob.glob(str(tmp_path / 'distiller*.pth'))
    proc = run([tool, mmdet_student['checkpoint'],
                str(tmp_path / 'pub.pth')], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the tool renames its output with a `mv` it does not wait for
    for _ in range(100):
        published = glob.glob(str(tmp_path / 'pub-*.pth'))
        if published and not osp.exists(tmp_path / 'pub.pth'):
            break
        time.sleep(0.1)
    (published, ) = published
    ckpt = torch.load(published, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'meta', 'state_dict'}
    keys = list(ckpt['state_dict'])
    assert keys and not any(
        k.startswith(('student.', 'teacher', 'distill')) for k in keys)
    assert any(k.startswith('backbone.') for k in keys)
