"""Fixtures shared by the tool tests."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmkd_toy import MMDET_TRAIN, subprocess_env

from mmkd_channel.testing.tiny_configs import tiny_det_config

FRCNN = 'configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py'


@pytest.fixture(scope='session')
def mmdet_trained(repo_root, coco_data, tmp_path_factory) -> dict:
    """The tiny Faster R-CNN CWT config trained for one iteration by
    mmdet's own tools/train.py (from the wheel's .mim folder).

    Only the installed packages (and this repository's package, which an
    editable install provides) are on the path: mmkd_channel is reached
    through the config's ``custom_imports``.
    """
    tmp = tmp_path_factory.mktemp('mmdet_train')
    cfg = Config.fromfile(osp.join(repo_root, FRCNN))
    tiny_det_config(
        cfg, coco_data, str(tmp / 'work'), img_scale=(64, 64),
        batch_size=4)  # 4 images: 1 iteration
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg_path = str(tmp / 'cwt_frcnn_tiny.py')
    cfg.dump(cfg_path)
    env = subprocess_env()
    # this repository's package, as the editable install provides it
    env['PYTHONPATH'] = repo_root
    proc = subprocess.run([sys.executable, MMDET_TRAIN, cfg_path],
                          cwd=str(tmp),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    return dict(
        cfg=cfg_path,
        work_dir=str(tmp / 'work'),
        proc=proc,
        checkpoint=str(tmp / 'work' / 'epoch_1.pth'),
        custom_imports=cfg.custom_imports.imports)
