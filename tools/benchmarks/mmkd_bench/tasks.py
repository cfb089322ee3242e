"""The efficacy tasks: digits (real data) and tiny generated COCO and
Cityscapes, each a :class:`~.task_base.Task`."""
import os.path as osp
from typing import Dict, List

from mmengine.config import Config

from .task_base import Task


class DigitsTask(Task):
    """scikit-learn's handwritten digits in mmpretrain's ImageNet format.

    1,797 real 8x8 images, upsampled to ``img_size``; ``num_train`` of them
    (stratified) train, the rest validate. Teacher: mmpretrain's ResNet-18
    (its ImageNet config; the stem's stride 4 brings 32 px back to the
    digits' native 8x8). Student: this project's MobileNetV1 at
    ``widen_factor`` (a small depthwise-separable net; the shipped
    MobileNetV1 configs are 1.0x). Augmentation: random crop with padding;
    no flips (they change digits).
    """

    name = 'digits'
    metric = 'accuracy/top1'
    metric_label = 'top-1 (%)'
    scale = 1.0
    scope = 'mmpretrain'
    teacher_config = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
    results_task = 'Image Classification'
    not_applicable = {
        'cwd':
        'CWD is a dense-prediction loss (a softmax over the spatial '
        'positions of each channel); the last stage of a 32 px '
        'classifier is 1x1',
    }
    defaults = dict(
        img_size=32,
        num_train=300,
        widen_factor=0.5,
        batch_size=32,
        epochs=40,
        lr=0.05,
        weight_decay=5e-4,
        teacher_epochs=60,
        teacher_lr=0.05,
        cwt_weight=20.0,
        val_per_class=None)
    quick_defaults = dict(
        num_train=40,
        epochs=1,
        teacher_epochs=1,
        batch_size=20,
        val_per_class=4)

    def make_data(self) -> dict:
        """Write the digits once (split seed 0, shared by every run)."""
        from mmkd_channel.testing import make_digits_imagenet
        s = self.settings
        data = make_digits_imagenet(
            osp.join(self.out_dir, 'data'),
            img_size=s['img_size'],
            num_train=s['num_train'],
            seed=0)
        if s['val_per_class']:
            data['val_ann'] = subsample_ann(
                osp.join(data['data_root'], data['val_ann']),
                s['val_per_class'])
        return data

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        from mmkd_channel.testing.tiny_configs import tiny_cls_config
        s = self.settings
        tiny_cls_config(
            cfg,
            self.prepare(),
            work_dir,
            img_size=s['img_size'],
            batch_size=s['batch_size'],
            seed=seed)
        size = s['img_size']
        train = [
            dict(type='LoadImageFromFile'),
            dict(type='RandomCrop', crop_size=size, padding=max(1, size // 8)),
            dict(type='PackInputs')
        ]
        test = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
        cfg.train_dataloader.dataset.pipeline = train
        for key in ('val_dataloader', 'test_dataloader'):
            cfg[key].dataset.pipeline = test
            cfg[key].batch_size = 128

    def student_model(self, model: dict) -> None:
        model.backbone.widen_factor = self.settings['widen_factor']
        model.head.in_channels = int(1024 * self.settings['widen_factor'])

    def adapt_distill(self, method: str, distill: dict) -> None:
        if method == 'cwt' and self.settings['cwt_weight'] is not None:
            distill.last_stage.loss.loss_weight = self.settings['cwt_weight']
        elif method == 'ofd':
            # the authors' small-image scaling 1e-3 (CIFAR) instead of
            # the preset's 1e-4 (ImageNet)
            for spec in distill.values():
                spec.loss.loss_weight *= 10
        elif method == 'sakd':
            spec = distill.last_stage
            spec.student = 'backbone.layers.12'
            spec.teacher = 'backbone.layer4'
            spec.loss.num_classes = 10

    def probe_shape(self) -> tuple:
        return (1, 3, self.settings['img_size'], self.settings['img_size'])

    def describe(self) -> List[str]:
        s = self.settings
        return [
            f"sklearn digits, {s['num_train']} train images (stratified, "
            f"split seed 0), the rest for validation, {s['img_size']} px",
            f"teacher ResNet-18 ({s['teacher_epochs']} epochs, trained "
            f"once); student MobileNetV1 {s['widen_factor']}x; "
            f"{s['epochs']} epochs, batch {s['batch_size']}, SGD lr "
            f"{s['lr']}, weight decay {s['weight_decay']}, cosine; CWT "
            f"loss weight {s['cwt_weight']}",
        ]


class CocoTask(Task):
    """Generated COCO-format shapes (tiny scale): Faster R-CNN R50 -> R18.

    The shipped Faster R-CNN configs (R101 -> R50 FPN) with a tiny pair
    that trains from scratch on CPU: teacher R50-FPN (mmdet's own 1x
    config), student R18-FPN. Detection from scratch on a few dozen images
    learns little; the numbers show whether the pipeline runs, not what
    the methods buy at scale.
    """

    name = 'coco'
    metric = 'coco/bbox_mAP'
    metric_label = 'bbox mAP (%)'
    scale = 100.0
    scope = 'mmdet'
    teacher_config = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
    results_task = 'Object Detection'
    not_applicable = {
        'ofd': 'no shipped detection config',
        'sakd': 'an image-level classification branch; no detection '
        'config',
        'kd': 'no shipped detection config',
    }
    defaults = dict(
        img_size=128,
        num_train=32,
        num_val=16,
        batch_size=2,
        epochs=8,
        lr=0.02,
        teacher_epochs=8,
        teacher_lr=0.02)
    quick_defaults = dict(num_train=4, num_val=2, epochs=1, teacher_epochs=1)
    clip_grad = dict(max_norm=10, norm_type=2)

    def make_data(self) -> dict:
        """Write the shapes once (seed 0)."""
        from mmkd_channel.testing import make_coco_detection
        s = self.settings
        return make_coco_detection(
            osp.join(self.out_dir, 'data'),
            num_train=s['num_train'],
            num_val=s['num_val'],
            img_size=(s['img_size'], s['img_size']))

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        from mmkd_channel.testing.tiny_configs import tiny_det_config
        s = self.settings
        tiny_det_config(
            cfg,
            self.prepare(),
            work_dir,
            img_scale=(s['img_size'], s['img_size']),
            batch_size=s['batch_size'],
            seed=seed,
            metrics=['bbox'])

    def student_model(self, model: dict) -> None:
        model.backbone.depth = 18
        model.neck.in_channels = [64, 128, 256, 512]

    def describe(self) -> List[str]:
        s = self.settings
        return [
            f"generated COCO shapes, {s['num_train']} train / "
            f"{s['num_val']} val images, {s['img_size']} px",
            f"teacher Faster R-CNN R50-FPN ({s['teacher_epochs']} epochs, "
            f"from scratch, trained once); student R18-FPN; "
            f"{s['epochs']} epochs, batch {s['batch_size']}, SGD lr "
            f"{s['lr']}, cosine",
        ]


class CityscapesTask(Task):
    """Generated Cityscapes-format street scenes (tiny): PSPNet R50 -> R18.

    The shipped PSPNet configs (R101-D8 -> R18-D8) with a teacher that
    trains from scratch on CPU: PSPNet R50-D8 (mmseg's own config). The
    student is the shipped configs' PSPNet R18-D8 as it is.
    """

    name = 'cityscapes'
    metric = 'mIoU'
    metric_label = 'mIoU (%)'
    scale = 1.0
    scope = 'mmseg'
    teacher_config = ('mmseg::pspnet/'
                      'pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py')
    results_task = 'Semantic Segmentation'
    not_applicable = {
        'sakd': 'an image-level classification branch; no segmentation '
        'config',
    }
    defaults = dict(
        img_h=64,
        img_w=128,
        num_train=16,
        num_val=8,
        batch_size=4,
        epochs=10,
        lr=0.01,
        teacher_epochs=10,
        teacher_lr=0.01)
    quick_defaults = dict(
        num_train=2, num_val=1, batch_size=2, epochs=1, teacher_epochs=1)

    def make_data(self) -> dict:
        """Write the scenes once (seed 0)."""
        from mmkd_channel.testing import make_cityscapes
        s = self.settings
        return make_cityscapes(
            osp.join(self.out_dir, 'data'),
            num_train=s['num_train'],
            num_val=s['num_val'],
            img_size=(s['img_h'], s['img_w']))

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        from mmkd_channel.testing.tiny_configs import tiny_seg_config
        s = self.settings
        tiny_seg_config(
            cfg,
            self.prepare(),
            work_dir,
            img_scale=(s['img_w'], s['img_h']),
            crop_size=(s['img_h'], s['img_w']),
            batch_size=s['batch_size'],
            seed=seed)

    def probe_shape(self) -> tuple:
        return (1, 3, self.settings['img_h'], self.settings['img_w'])

    def describe(self) -> List[str]:
        s = self.settings
        return [
            f"generated Cityscapes scenes, {s['num_train']} train / "
            f"{s['num_val']} val images, {s['img_h']}x{s['img_w']} px",
            f"teacher PSPNet R50-D8 ({s['teacher_epochs']} epochs, from "
            f"scratch, trained once); student PSPNet R18-D8; "
            f"{s['epochs']} epochs, batch {s['batch_size']}, SGD lr "
            f"{s['lr']}, cosine",
        ]


def subsample_ann(ann_file: str, per_class: int) -> str:
    """Write ``<ann>_<k>.txt`` with the first ``per_class`` lines per label.

    Returns:
        str: The new file's path relative to the data root's ``meta``
        parent, i.e. ``meta/<name>``.
    """
    counts: Dict[str, int] = {}
    keep = []
    with open(ann_file) as f:
        for line in f:
            label = line.split()[-1]
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                keep.append(line)
    stem, ext = osp.splitext(ann_file)
    out = f'{stem}_{per_class}{ext}'
    with open(out, 'w') as f:
        f.writelines(keep)
    return osp.join(osp.basename(osp.dirname(out)), osp.basename(out))


TASKS: Dict[str, type] = {
    'digits': DigitsTask,
    'coco': CocoTask,
    'cityscapes': CityscapesTask
}
