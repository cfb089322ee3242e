"""The shipped Faster R-CNN CWT config trains, validates and resumes."""
import math
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

from mmkd_channel.testing.tiny_configs import tiny_det_config
from mmkd_channel.utils import safe_torch_load

CONFIG = 'configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py'


def build_cfg(repo_root, coco_data, work_dir, max_epochs):
    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    return tiny_det_config(
        cfg, coco_data, str(work_dir), max_epochs=max_epochs)


def test_config_is_short_and_inherits_baseline(repo_root):
    with open(osp.join(repo_root, CONFIG)) as f:
        code = [
            ln for ln in f if ln.strip() and not ln.strip().startswith('#')
        ]
    assert len(code) <= 12
    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    assert cfg.model.type == 'mmkd_channel.FeatureDistiller'
    assert cfg.model.student.type == 'FasterRCNN'
    assert cfg.model.student.backbone.depth == 50
    assert cfg.model.teacher_ckpt.startswith('https://download.openmmlab.com')
    assert cfg.train_cfg.max_epochs == 24  # the 2x baseline schedule


def test_train_validate_checkpoint_and_resume(repo_root, coco_data, tmp_path):
    cfg = build_cfg(repo_root, coco_data, tmp_path, max_epochs=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    iters = runner.iter
    assert iters == 2  # 4 images, batch 2
    distill = hub.get_scalar('train/loss_distill_fpn').data[0]
    assert len(distill) == iters and all(math.isfinite(v) for v in distill)
    for key in ('train/loss', 'train/loss_rpn_cls', 'train/loss_cls'):
        assert all(math.isfinite(v) for v in hub.get_scalar(key).data[0])
    assert 'coco/bbox_mAP' in hub.log_scalars or any(
        k.endswith('coco/bbox_mAP') for k in hub.log_scalars)

    ckpt_path = tmp_path / 'epoch_1.pth'
    ckpt = safe_torch_load(str(ckpt_path), 'cpu')
    keys = list(ckpt['state_dict'])
    assert not any(k.startswith('teacher.') for k in keys)
    assert any(k.startswith('student.backbone.') for k in keys)
    assert any(k.startswith('distill_pairs.fpn.connector.') for k in keys)
    assert 'message_hub' in ckpt and 'optimizer' in ckpt

    # --resume: continues at epoch 2 / iteration 3 with the saved state
    cfg = build_cfg(repo_root, coco_data, tmp_path, max_epochs=2)
    cfg.resume = True
    cfg.load_from = str(ckpt_path)
    runner2 = Runner.from_cfg(cfg)
    runner2.train()
    assert runner2.iter == 2 * iters
    assert runner2.epoch == 2
    assert osp.isfile(tmp_path / 'epoch_2.pth')
