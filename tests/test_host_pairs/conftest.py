"""Tiny datasets for the host-pair tests, generated once per session."""
import pytest


@pytest.fixture(scope='session')
def tiny_datasets(tmp_path_factory):
    """``kind -> data`` for :func:`mmkd_channel.testing.tiny_configs.
    tiny_config`, each generated on first use."""
    from mmkd_channel.testing import (make_cityscapes, make_coco_detection,
                                      make_imagenet)
    makers = dict(
        coco=lambda d: make_coco_detection(d, num_train=4, num_val=2),
        cityscapes=lambda d: make_cityscapes(
            d, num_train=4, num_val=2, img_size=(64, 128)),
        imagenet=lambda d: make_imagenet(
            d,
            num_classes=4,
            per_class_train=1,
            per_class_val=1,
            img_size=(64, 64)))

    class Lazy(dict):

        def __missing__(self, kind):
            self[kind] = makers[kind](tmp_path_factory.mktemp(kind))
            return self[kind]

    return Lazy()
