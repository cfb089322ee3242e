"""Tiny, deterministic, learnable datasets in real OpenMMLab on-disk formats.

Every ``make_*`` function writes a small synthetic dataset under ``root`` in
the exact layout that mmdet 3.3, mmseg 1.2.2 or mmpretrain 1.2.0 read, so
tests and demos never download anything. Only numpy, Pillow and the standard
library are used; OpenMMLab packages are imported lazily inside the one
helper that needs them (:func:`tiny_cifar100_cls`).

Each function is deterministic for a given ``seed`` and returns a dict with
the (absolute) ``data_root`` plus the relative paths and metainfo to put in
a dataset config.
"""
from .cifar import (CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES, make_cifar100,
                    tiny_cifar100_cls)
from .cityscapes import make_cityscapes
from .coco import make_coco_detection
from .imagenet import make_digits_imagenet, make_imagenet

__all__ = [
    'make_coco_detection', 'make_cityscapes', 'make_imagenet',
    'make_digits_imagenet', 'make_cifar100', 'tiny_cifar100_cls',
    'CIFAR100_FINE_NAMES', 'CIFAR100_COARSE_NAMES'
]
