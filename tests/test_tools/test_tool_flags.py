"""mmdet's flags on our tools: ``train.py --auto-scale-lr``; ``test.py
--out --show --show-dir --wait-time --tta``; and the checkpoint loaders'
log line ("Loads checkpoint by local backend")."""
import glob
import importlib.util
import json
import logging
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmkd_toy import REPO, subprocess_env, toy_config

TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')


def run(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable] + list(args),
        cwd=str(cwd),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300)


def load_test_tool():
    spec = importlib.util.spec_from_file_location('mmkd_test_tool', TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_lr(work_dir: str) -> float:
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(ln) for ln in f if 'iter' in ln][0]['lr']


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    """A toy distillation trained for one epoch with --auto-scale-lr:
    the lr is tuned for batch 8, the run uses batch 2."""
    tmp = tmp_path_factory.mktemp('toy')
    cfg = toy_config(str(tmp / 'work'), max_epochs=1, batch_size=2, lr=0.08)
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=8)
    cfg_path = str(tmp / 'toy.py')
    cfg.dump(cfg_path)
    proc = run([TRAIN, cfg_path, '--auto-scale-lr'], tmp)
    return dict(
        cfg=cfg_path,
        tmp=tmp,
        proc=proc,
        work_dir=str(tmp / 'work'),
        ckpt=str(tmp / 'work' / 'epoch_1.pth'))


def test_auto_scale_lr_scales_by_batch_size(toy_run, tmp_path):
    assert toy_run['proc'].returncode == 0, toy_run['proc'].stderr[-3000:]
    # 1 process x batch 2 against base batch 8: lr 0.08 * 2 / 8
    assert first_lr(toy_run['work_dir']) == pytest.approx(0.02)

    cfg = Config.fromfile(toy_run['cfg'])
    cfg.pop('auto_scale_lr')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.dump(str(tmp_path / 'no_auto.py'))
    proc = run([TRAIN, str(tmp_path / 'no_auto.py'), '--auto-scale-lr'],
               tmp_path)
    assert proc.returncode != 0
    assert 'auto_scale_lr.base_batch_size' in proc.stderr


def test_config_dump_goes_to_the_log_file_only(toy_run):
    terminal = toy_run['proc'].stdout + toy_run['proc'].stderr
    (log, ) = glob.glob(osp.join(toy_run['work_dir'], '*', '*.log'))
    with open(log) as f:
        text = f.read()
    assert 'train_dataloader = dict(' in text  # the config, in the file
    assert 'train_dataloader = dict(' not in terminal
    assert f'Config: in {log}' in terminal
    assert 'Epoch(train)' in terminal  # progress still shows


def test_out_dumps_predictions(toy_run, tmp_path):
    out = str(tmp_path / 'preds.pkl')
    proc = run([TEST, toy_run['cfg'], toy_run['ckpt'], '--out', out], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 8  # the toy test set
    proc = run([TEST, toy_run['cfg'], toy_run['ckpt'], '--out', 'x.json'],
               tmp_path)
    assert proc.returncode != 0 and '.pkl' in proc.stderr


def test_loaders_name_their_backend(toy_run, tmp_path, monkeypatch):
    from mmengine.runner import CheckpointLoader

    import mmkd_channel  # noqa: F401  (registers the loaders)

    class Lines(logging.Handler):

        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    logger = logging.getLogger('mmkd_loader_test')
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    CheckpointLoader.load_checkpoint(toy_run['ckpt'], logger=logger)

    # an http checkpoint, "downloaded" from the local file
    def fake_download(url, dst, progress=True):
        with open(toy_run['ckpt'], 'rb') as src, open(dst, 'wb') as f:
            f.write(src.read())

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    CheckpointLoader.load_checkpoint(
        'https://example.org/ckpt/epoch_1.pth', logger=logger)
    assert [ln.split(' from path')[0] for ln in handler.lines] == [
        'Loads checkpoint by local backend', 'Loads checkpoint by http backend'
    ]


def test_mmdet_tta_out_and_show_dir(mmdet_trained, tmp_path):
    """--tta --out --show-dir on the Faster R-CNN CWT student."""
    assert mmdet_trained['proc'].returncode == 0, \
        mmdet_trained['proc'].stderr[-3000:]
    out = str(tmp_path / 'preds.pkl')
    work = tmp_path / 'work'
    proc = run([
        TEST, mmdet_trained['cfg'], mmdet_trained['checkpoint'], '--tta',
        '--out', out, '--show-dir', 'painted', '--work-dir',
        str(work)
    ], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'DetTTAModel' in proc.stderr + proc.stdout
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 2  # the conftest's num_val
    assert 'pred_instances' in preds[0] and 'bboxes' in preds[0][
        'pred_instances']
    painted = glob.glob(str(work / '*' / 'painted' / '*.jpg')) + glob.glob(
        str(work / '*' / 'painted' / '*.png'))
    assert len(painted) == len(preds), sorted(
        glob.glob(str(work / '**'), recursive=True))[:20]


@pytest.mark.parametrize('host', ['mmpretrain', 'mmseg', 'mmdet'])
def test_tta_wraps_the_distiller_as_the_host_does(host):
    tool = load_test_tool()
    configs = sorted(
        p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) != '_base_')
    cfg = next(
        c for c in map(Config.fromfile, configs)
        if c.get('default_scope') == host
        and c.model.type.endswith('FeatureDistiller'))
    tool.apply_tta(cfg)
    expected = dict(
        mmdet='DetTTAModel',
        mmseg='SegTTAModel',
        mmpretrain='AverageClsScoreTTA')[host]
    assert cfg.model.type.split('.')[-1] == expected
    assert cfg.model.module.type.endswith('FeatureDistiller')
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[-1]['type'] == 'TestTimeAug'
