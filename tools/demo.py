"""Main job: a small real CWT distillation on generated COCO-format data.

Trains, with MMEngine's Runner on the CPU and the same schedule each:
  1. the teacher: Faster R-CNN R50-FPN (mmdet's own config),
  2. the plain student: Faster R-CNN R18-FPN,
  3. the distilled student: the shipped CWT config
     (configs/cwt/cwt_frcnn-r101-frcnn-r50_fpn_2x_coco.py) with the R50
     teacher of step 1 and the R18 student of step 2,
then prints COCO bbox mAP of all three. Nothing is downloaded: backbones
start from random weights on the tiny generated data.
"""
import argparse
import copy
import json
import os.path as osp
import time

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

import mmkd_channel  # noqa: F401
from mmkd_channel.testing import make_coco_detection
from mmkd_channel.testing.tiny_configs import tiny_det_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CWT_CONFIG = osp.join(REPO, 'configs/cwt/cwt_frcnn-r101-frcnn-r50_fpn_2x_coco.py')
TEACHER = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'


def as_r18(model: dict) -> None:
    model.backbone.depth = 18
    model.neck.in_channels = [64, 128, 256, 512]


def schedule(cfg: Config, epochs: int, lr: float) -> None:
    cfg.optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-4),
        clip_grad=dict(max_norm=10, norm_type=2))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=50),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=0,
             end=epochs, T_max=epochs)
    ]
    cfg.default_hooks.logger.interval = 20
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=epochs, max_keep_ckpts=1)
    cfg.train_cfg.val_interval = epochs


def run(cfg: Config) -> dict:
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    return {k: float(v) for k, v in metrics.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--lr', type=float, default=0.02)
    parser.add_argument('--img-size', type=int, default=128)
    args = parser.parse_args()
    t0 = time.time()
    data = make_coco_detection(
        osp.join(args.work_dir, 'data'), num_train=args.num_train,
        num_val=max(16, args.num_train // 4),
        img_size=(args.img_size, args.img_size))
    scale = (args.img_size, args.img_size)

    def tiny(cfg, name):
        tiny_det_config(cfg, data, osp.join(args.work_dir, name),
                        img_scale=scale, max_epochs=args.epochs)
        schedule(cfg, args.epochs, args.lr)
        return cfg

    results = {}
    teacher_cfg = tiny(Config.fromfile(TEACHER), 'teacher')
    teacher_cfg.dump(osp.join(args.work_dir, 'teacher_config.py'))
    results['teacher (R50-FPN)'] = run(teacher_cfg)
    teacher_ckpt = osp.join(args.work_dir, 'teacher',
                            f'epoch_{args.epochs}.pth')

    student_cfg = tiny(Config.fromfile(TEACHER), 'student')
    as_r18(student_cfg.model)
    results['student (R18-FPN)'] = run(student_cfg)

    cwt_cfg = tiny(Config.fromfile(CWT_CONFIG), 'student_cwt')
    cwt_cfg.model.student = copy.deepcopy(student_cfg.model)
    cwt_cfg.model.teacher = osp.join(args.work_dir, 'teacher_config.py')
    cwt_cfg.model.teacher_ckpt = teacher_ckpt
    results['student + CWT'] = run(cwt_cfg)

    logger = MMLogger.get_current_instance()
    lines = ['', f'{"model":<22} {"bbox mAP":>9} {"mAP@50":>8}']
    for name, m in results.items():
        lines.append(f'{name:<22} {m["coco/bbox_mAP"]:>9.3f} '
                     f'{m["coco/bbox_mAP_50"]:>8.3f}')
    lines.append(f'({args.num_train} train images, {args.epochs} epochs, '
                 f'{args.img_size}px, {time.time() - t0:.0f} s)')
    logger.info('\n'.join(lines))
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
