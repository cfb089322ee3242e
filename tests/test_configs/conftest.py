"""Tiny datasets for the config tests, generated once per session.

``coco_data`` comes from the top-level conftest.
"""
import pytest


@pytest.fixture(scope='session')
def cityscapes_data(tmp_path_factory):
    from mmkd_channel.testing import make_cityscapes
    return make_cityscapes(
        tmp_path_factory.mktemp('cityscapes'),
        num_train=4,
        num_val=2,
        img_size=(64, 128))


@pytest.fixture(scope='session')
def imagenet_data(tmp_path_factory):
    from mmkd_channel.testing import make_imagenet
    return make_imagenet(
        tmp_path_factory.mktemp('imagenet'),
        num_classes=4,
        per_class_train=1,
        per_class_val=1,
        img_size=(64, 64))


@pytest.fixture(scope='session')
def cifar100_data(tmp_path_factory):
    from mmkd_channel.testing import make_cifar100
    return make_cifar100(
        tmp_path_factory.mktemp('cifar100'), num_train=4, num_val=2)
