"""Every config under ``configs/`` (but ``_base_``) loads, builds, trains a
few iterations on tiny data and is validated with the host's evaluator.

The list of configs is found by walking ``configs/``, so a new config cannot
ship without passing these tests.
"""
import glob
import math
import os.path as osp
import re

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from mmkd_channel.testing.tiny_cifar import tiny_cifar_config
from mmkd_channel.testing.tiny_configs import (tiny_cls_config,
                                               tiny_det_config,
                                               tiny_seg_config)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, REPO).split(osp.sep))

# training dataset type -> (tiny-data override, data fixture)
TINY = dict(
    CocoDataset=(tiny_det_config, 'coco_data'),
    CityscapesDataset=(tiny_seg_config, 'cityscapes_data'),
    ImageNet=(tiny_cls_config, 'imagenet_data'),
    CIFAR100=(tiny_cifar_config, 'cifar100_data'))


def dataset_type(cfg: Config) -> str:
    return cfg.train_dataloader.dataset.type


def expected_metrics(cfg: Config) -> list:
    """Keys the host evaluator must report, from the config itself."""
    ev = cfg.val_evaluator
    if ev.type == 'CocoMetric':
        metrics = ev.metric
        metrics = [metrics] if isinstance(metrics, str) else metrics
        return [f'coco/{m}_mAP' for m in metrics]
    return dict(IoUMetric=['mIoU'], Accuracy=['accuracy/top1'])[ev.type]


def is_distill(cfg: Config) -> bool:
    return cfg.model.type == 'mmkd_channel.FeatureDistiller'


def teachers_of(cfg: Config) -> dict:
    """``name -> {config, ckpt}`` of ``teachers=`` or of ``teacher=``."""
    if 'teachers' in cfg.model:
        return cfg.model.teachers
    return dict(
        teacher=ConfigDict(
            config=cfg.model.teacher, ckpt=cfg.model.teacher_ckpt))


def check_distill_name(path: str, cfg: Config) -> None:
    """OpenMMLab's distillation naming, checked against the config itself.

    ``{algorithm}_{location}_{teacher}_{student}_{NxbM}-{schedule}_{dataset}``
    in the method's folder (``configs/cwt/cwt_...``), where ``M`` is the
    training batch per GPU, ``N * M`` the host's reference batch
    (``auto_scale_lr``) and the schedule the length of training.
    """
    fields = osp.basename(path)[:-3].split('_')
    assert fields[0] == osp.basename(osp.dirname(path)), path
    # algorithm, location, >= 1 field each for teacher and student, NxbM-
    # schedule, dataset
    assert len(fields) >= 6, f'{path}: too few fields for the convention'
    match = re.fullmatch(r'(\d+)xb(\d+)-(\d+)(e|x|k)', fields[-2])
    assert match, f'{path}: {fields[-2]!r} is not NxbM-schedule'
    gpus, per_gpu, length, unit = match.groups()
    assert int(per_gpu) == cfg.train_dataloader.batch_size, path
    if cfg.get('auto_scale_lr'):
        assert int(gpus) * int(per_gpu) == \
            cfg.auto_scale_lr.base_batch_size, path
    if unit == 'k':
        assert cfg.train_cfg.max_iters == int(length) * 1000, path
    else:
        epochs = int(length) * (12 if unit == 'x' else 1)
        assert cfg.train_cfg.max_epochs == epochs, path


def test_configs_are_found():
    assert len(CONFIGS) >= 6
    assert 'configs/mobilenet_v1/mobilenet-v1_8xb32_in1k.py' in CONFIGS


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads(path):
    cfg = Config.fromfile(osp.join(REPO, path))
    assert dataset_type(cfg) in TINY, (
        f'{path}: no tiny-data override for {dataset_type(cfg)!r}; add one '
        'to mmkd_channel/testing and to TINY here')
    if not is_distill(cfg):
        return
    check_distill_name(path, cfg)
    with open(osp.join(REPO, path)) as f:
        code = [
            ln for ln in f if ln.strip() and not ln.strip().startswith('#')
        ]
    assert len(code) <= 14, f'{path} has {len(code)} lines of code'
    for teacher in teachers_of(cfg).values():
        assert isinstance(teacher.config, str) and '::' in teacher.config
        assert teacher.ckpt.startswith('https://download.openmmlab.com/')
    assert cfg.model.distill and isinstance(cfg.model.student, dict)


@pytest.mark.parametrize('path', CONFIGS)
def test_config_trains_and_validates(path, request, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, path))
    tiny, fixture = TINY[dataset_type(cfg)]
    tiny(cfg, request.getfixturevalue(fixture), str(tmp_path))
    distill = is_distill(cfg)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    # the images are normalised by the host's own preprocessor settings
    assert model.data_preprocessor._enable_normalize
    if distill:
        assert set(model.teacher_ckpts.values()) == {None}
        assert model._checked, 'distilled pairs not checked at build time'
        assert len(model.teachers) == len(teachers_of(cfg))
        for teacher in model.teachers.values():
            assert not any(p.requires_grad for p in teacher.parameters())
        assert set(model.distill_pairs) == set(cfg.model.distill)
    runner.train()

    iters = runner.iter
    assert iters == len(runner.train_dataloader) == 2  # 4 images, batch 2
    hub = runner.message_hub
    losses = [
        k for k in hub.log_scalars if k.startswith('train/') and 'loss' in k
    ]
    for key in losses:
        values = hub.get_scalar(key).data[0]
        assert len(values) == iters and all(map(math.isfinite, values)), key
    if distill:
        assert any(k.startswith('train/loss_distill_') for k in losses)
    for metric in expected_metrics(cfg):
        value = hub.get_scalar(f'val/{metric}').current()
        assert math.isfinite(value), (metric, value)
