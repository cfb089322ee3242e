"""Testing utilities: tiny synthetic datasets in real OpenMMLab formats."""
from .tiny_data import (make_cifar100, make_cityscapes, make_coco_detection,
                        make_digits_imagenet, make_imagenet, tiny_cifar100_cls)

__all__ = [
    'make_coco_detection', 'make_cityscapes', 'make_imagenet', 'make_cifar100',
    'make_digits_imagenet', 'tiny_cifar100_cls'
]
