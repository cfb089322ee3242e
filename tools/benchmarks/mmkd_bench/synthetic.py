"""Synthetic inputs of the overhead benchmark: configs on random weights and
host-format batches (uint8 images and data samples) for mmdet, mmseg and
mmpretrain students."""
import copy
from typing import Optional, Tuple

import torch
from mmengine.config import Config

DEFAULT_SIZES = {
    'mmdet': (128, 128),
    'mmseg': (128, 256),
    'mmpretrain': (128, 128)
}


def load_distill_config(config: str,
                        cfg_options: Optional[dict] = None) -> Config:
    """Load a distillation config for benchmarking on random weights.

    The teachers' checkpoints are dropped, ``Pretrained`` initialisations are
    removed (nothing downloads), SyncBN becomes BN, and the top-level
    ``data_preprocessor`` is handed to the model as the Runner does.

    Args:
        config (str): Path or ``mmkd_channel::`` form of the config.
        cfg_options (dict, optional): ``--cfg-options`` overrides.

    Returns:
        Config: The modified config.
    """
    import mmkd_channel  # noqa: F401  (registries, mmkd_channel:: scope)
    from mmkd_channel.testing.tiny_configs import (host_models, no_pretrained,
                                                   replace_sync_bn)
    from mmkd_channel.utils import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = cfg.model
    if 'student' not in model or ('teacher' not in model
                                  and 'teachers' not in model):
        raise ValueError(f'{config}: not a distillation config (its model '
                         'has no `student` and `teacher` or `teachers`).')
    model.teacher_ckpt = None
    for teacher in (model.get('teachers') or {}).values():
        teacher.ckpt = None
    for m in host_models(cfg):
        no_pretrained(m)
        replace_sync_bn(m)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor',
                         copy.deepcopy(cfg.data_preprocessor))
    return cfg


def host_kind(model_cls: type) -> str:
    """``'mmdet'``, ``'mmseg'`` or ``'mmpretrain'`` for a host model class."""
    root = model_cls.__module__.split('.')[0]
    if root not in DEFAULT_SIZES:
        raise TypeError(f'{model_cls.__name__} ({model_cls.__module__}) '
                        'is not an mmdet, mmseg or mmpretrain model')
    return root


def num_classes_of(model_cfg: dict) -> int:
    from mmkd_channel.testing.tiny_configs import walk_dicts
    found = [
        d['num_classes'] for d in walk_dicts(model_cfg)
        if isinstance(d.get('num_classes'), int)
    ]
    return max(found) if found else 10


def set_seg_size(cfg: Config, img_size: Tuple[int, int]) -> None:
    """mmseg pads training batches to ``size``: make it the image size."""
    from mmkd_channel.testing.tiny_configs import walk_dicts
    for d in walk_dicts([cfg.model, cfg.get('data_preprocessor')]):
        if d.get('type', '').endswith('SegDataPreProcessor') and d.get('size'):
            d['size'] = tuple(img_size)


# --------------------------------------------------------------------- #
# synthetic batches
def make_batch(kind: str,
               batch_size: int,
               img_size: Tuple[int, int],
               num_classes: int,
               seed: int,
               with_mask: bool = False) -> dict:
    """A batch as a host dataloader yields it: uint8 images + data samples.

    Args:
        kind (str): ``'mmdet'`` (``DetDataSample`` with 1-4 boxes, labels
            and, if ``with_mask``, bitmap masks), ``'mmseg'``
            (``SegDataSample`` with a blocky ``gt_sem_seg``) or
            ``'mmpretrain'`` (``DataSample`` with ``gt_label``).
        batch_size (int): Images in the batch.
        img_size (tuple): ``(H, W)``.
        num_classes (int): Label range.
        seed (int): Seed of the batch's content.
        with_mask (bool): Add instance masks (Mask R-CNN).

    Returns:
        dict: ``inputs`` (list of ``(3, H, W)`` uint8 tensors) and
        ``data_samples``.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = img_size
    inputs, samples = [], []
    meta = dict(
        img_path='',
        ori_shape=(h, w),
        img_shape=(h, w),
        pad_shape=(h, w),
        scale_factor=(1.0, 1.0),
        flip=False,
        flip_direction=None)
    for i in range(batch_size):
        inputs.append(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
        if kind == 'mmdet':
            samples.append(
                _det_sample(g, h, w, num_classes, with_mask,
                            dict(meta, img_id=i)))
        elif kind == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            s = SegDataSample(metainfo=meta)
            coarse = torch.randint(
                0, num_classes, (1, h // 16 + 1, w // 16 + 1), generator=g)
            label = coarse.repeat_interleave(16, 1).repeat_interleave(16, 2)
            s.gt_sem_seg = PixelData(data=label[:, :h, :w].contiguous())
            samples.append(s)
        elif kind == 'mmpretrain':
            from mmpretrain.structures import DataSample
            label = int(torch.randint(0, num_classes, (1, ), generator=g))
            samples.append(
                DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(
                    h, w))).set_gt_label(label))
        else:
            raise ValueError(f'unknown host kind {kind!r}')
    return dict(inputs=inputs, data_samples=samples)


def _det_sample(g, h, w, num_classes, with_mask, meta):
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    k = int(torch.randint(1, 5, (1, ), generator=g))
    size = torch.rand(k, 2, generator=g) * 0.4 + 0.15
    x1 = torch.rand(k, generator=g) * (1 - size[:, 0]) * w
    y1 = torch.rand(k, generator=g) * (1 - size[:, 1]) * h
    boxes = torch.stack([x1, y1, x1 + size[:, 0] * w, y1 + size[:, 1] * h],
                        dim=1)
    s = DetDataSample(metainfo=meta)
    gt = InstanceData(
        bboxes=HorizontalBoxes(boxes),
        labels=torch.randint(0, num_classes, (k, ), generator=g))
    if with_mask:
        masks = np.zeros((k, h, w), dtype=np.uint8)
        for j, (a, b, c, d) in enumerate(boxes.round().long().tolist()):
            masks[j, b:d, a:c] = 1
        gt.masks = BitmapMasks(masks, h, w)
    s.gt_instances = gt
    s.ignored_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.zeros(0, 4)),
        labels=torch.zeros(0, dtype=torch.long))
    return s
