"""The logged ``loss`` is the back-propagated total: the sum of the logged
terms, for an mmpretrain, an mmdet and an mmseg student.

mmpretrain's heads return their cross-entropy under the key ``loss``, the
name MMEngine's ``parse_losses`` gives the total; the distiller renames it.
The shipped configs are found by walking ``configs/`` (their names change),
one distillation config per host dataset.
"""
import glob
import json
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd_channel.models.distillers.loss_keys import rename_reserved_losses
from mmkd_channel.testing.tiny_configs import (tiny_cls_config,
                                               tiny_det_config,
                                               tiny_seg_config)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# host -> (training dataset type, tiny override, data fixture, batch size);
# one or two iterations each (PSPNet's pyramid pooling needs batch 2)
HOSTS = dict(
    mmpretrain=('ImageNet', tiny_cls_config, 'imagenet_data', 1),
    mmdet=('CocoDataset', tiny_det_config, 'coco_data', 2),
    mmseg=('CityscapesDataset', tiny_seg_config, 'cityscapes_data', 2))


def shipped_distill_config(dataset: str) -> str:
    """The first shipped distillation config training on ``dataset``."""
    paths = sorted(
        p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) != '_base_')
    for path in paths:
        cfg = Config.fromfile(path)
        if (cfg.model.type.endswith('FeatureDistiller')
                and cfg.train_dataloader.dataset.type == dataset):
            return path
    raise AssertionError(f'no shipped distillation config on {dataset}')


def logged_iterations(work_dir: str) -> list:
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'iter' in r]


@pytest.fixture(scope='module')
def cityscapes_data(tmp_path_factory):
    from mmkd_channel.testing import make_cityscapes
    return make_cityscapes(
        tmp_path_factory.mktemp('cityscapes'),
        num_train=2,
        num_val=1,
        img_size=(64, 128))


@pytest.fixture(scope='module')
def imagenet_data(tmp_path_factory):
    from mmkd_channel.testing import make_imagenet
    return make_imagenet(
        tmp_path_factory.mktemp('imagenet'),
        num_classes=2,
        per_class_train=1,
        per_class_val=1,
        img_size=(64, 64))


def test_reserved_key_is_renamed_in_place_of_the_original():
    cls = object()
    assert list(rename_reserved_losses({
        'loss': cls,
        'acc': 1
    })) == ['loss_cls', 'acc']
    assert rename_reserved_losses({'loss': cls})['loss_cls'] is cls
    # loss_cls taken: the next free name, the existing term untouched
    out = rename_reserved_losses({'loss_cls': 1, 'loss': 2})
    assert out == {'loss_cls': 1, 'loss_task': 2}
    out = rename_reserved_losses({'loss_cls': 1, 'loss_task': 3, 'loss': 2})
    assert out['loss_task_1'] == 2 and len(out) == 3
    plain = {'loss_cls': 1}
    assert rename_reserved_losses(plain) is plain


@pytest.mark.parametrize('host', list(HOSTS))
def test_logged_total_is_sum_of_logged_terms(host, request, tmp_path):
    dataset, tiny, fixture, batch_size = HOSTS[host]
    path = shipped_distill_config(dataset)
    cfg = Config.fromfile(path)
    tiny(
        cfg,
        request.getfixturevalue(fixture),
        str(tmp_path),
        batch_size=batch_size)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    # mmdet / mmseg name their visualizer 'visualizer': MMEngine would hand
    # this runner the instance (and log dir) of an earlier runner of the
    # test session
    cfg.visualizer.name = f'visualizer_{tmp_path.name}'
    runner = Runner.from_cfg(cfg)
    runner.train()

    records = logged_iterations(str(tmp_path))
    assert records, 'no training iteration was logged'
    for rec in records:
        # MMEngine sums every key containing 'loss' into the total
        terms = {k: v for k, v in rec.items() if 'loss' in k and k != 'loss'}
        assert any(k.startswith('loss_distill_') for k in terms), rec
        task = [k for k in terms if not k.startswith('loss_distill_')]
        assert task, f'{osp.basename(path)}: no task loss logged: {rec}'
        assert math.isclose(
            rec['loss'], sum(terms.values()), rel_tol=1e-4,
            abs_tol=1e-6), (f'{osp.basename(path)}: logged loss '
                            f"{rec['loss']} != sum of {terms}")
    if host == 'mmpretrain':
        assert 'loss_cls' in records[0], records[0]
