"""Shrink any host config of a model-index pair to generated tiny data.

``--tiny`` runs the real configs (same models, losses, hooks and tools) on
a few generated images, so the whole cluster command can be tried on a CPU
machine in minutes. The numbers it produces test the pipeline, not the
methods. The overrides are those of ``mmkd_channel.testing`` (also used by
the tests): data roots of the generated data, small images, no downloads,
one epoch.
"""
import os.path as osp
from typing import Callable, Dict

import torch
from mmengine.config import Config

# generated data per kind, small enough that a run takes seconds
IMG = 64  # detection side (px); segmentation images are IMG x 2 * IMG
CLS_IMG = 32


def _dataset_type(cfg: Config) -> str:
    dl = cfg.get('train_dataloader') or {}
    ds = dl.get('dataset') or {}
    while 'dataset' in ds:  # wrappers (RepeatDataset, ...)
        ds = ds['dataset']
    return str(ds.get('type', ''))


def data_kind(cfg: Config) -> str:
    """``coco``, ``cityscapes``, ``imagenet`` or ``cifar`` for a config."""
    scope = cfg.get('default_scope', '')
    dtype = _dataset_type(cfg)
    if scope == 'mmdet':
        return 'coco'
    if scope == 'mmseg':
        return 'cityscapes'
    if scope == 'mmpretrain':
        return 'cifar' if 'CIFAR' in dtype else 'imagenet'
    raise ValueError(f'--tiny knows mmdet, mmseg and mmpretrain configs; '
                     f'this one has default_scope={scope!r}')


class TinyData:
    """The generated datasets under ``root``, written on first use."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._data: Dict[str, dict] = {}

    def get(self, kind: str) -> dict:
        """What the ``mmkd_channel.testing`` generator of ``kind``
        returned."""
        if kind not in self._data:
            from mmkd_channel import testing as t
            makers: Dict[str, Callable[[str], dict]] = {
                'coco':
                lambda r: t.make_coco_detection(
                    r, num_train=4, num_val=2, img_size=(IMG, IMG)),
                'cityscapes':
                lambda r: t.make_cityscapes(
                    r, num_train=4, num_val=2, img_size=(IMG, 2 * IMG)),
                'imagenet':
                lambda r: t.make_imagenet(
                    r,
                    num_classes=4,
                    per_class_train=1,
                    per_class_val=1,
                    img_size=(CLS_IMG, CLS_IMG)),
                'cifar':
                lambda r: t.make_cifar100(r),
            }
            self._data[kind] = makers[kind](osp.join(self.root, kind))
        return self._data[kind]


def shrink(cfg: Config, data: TinyData, work_dir: str) -> Config:
    """Point ``cfg`` at tiny data: one epoch, batch 1 per process (2 for
    classifiers and segmenters)."""
    from mmkd_channel.testing.tiny_cifar import tiny_cifar_config
    from mmkd_channel.testing.tiny_configs import (tiny_cls_config,
                                                   tiny_det_config,
                                                   tiny_seg_config)
    kind = data_kind(cfg)
    d = data.get(kind)
    if kind == 'coco':
        tiny_det_config(cfg, d, work_dir, img_scale=(IMG, IMG), batch_size=1)
    elif kind == 'cityscapes':
        tiny_seg_config(
            cfg,
            d,
            work_dir,
            img_scale=(2 * IMG, IMG),
            crop_size=(IMG, IMG),
            batch_size=2)
    # classifiers and PSPNet (its pyramid pooling has a 1x1 branch) train
    # on batches of 2: BatchNorm needs more than one value per channel
    elif kind == 'imagenet':
        tiny_cls_config(cfg, d, work_dir, img_size=CLS_IMG, batch_size=2)
    else:
        tiny_cifar_config(cfg, d, work_dir, batch_size=2)
    cfg.pop('auto_scale_lr', None)
    return cfg


def random_checkpoint(cfg: Config, path: str, seed: int = 0) -> str:
    """Save the randomly initialised model of ``cfg`` as a checkpoint.

    The tiny teacher: no model-zoo weights are downloaded; its evaluation
    and the distillation load these instead. The initialisation is seeded:
    an unseeded random detector sometimes scores every box below the test
    threshold, and then the COCO evaluator writes no metric at all, so the
    table's teacher column would depend on the draw.
    """
    from mmengine.registry import DefaultScope

    from mmkd_channel.registry import MODELS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            model = MODELS.build(cfg.model)
        model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path
