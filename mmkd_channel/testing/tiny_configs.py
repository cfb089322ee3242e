"""Shrink a real host config to the generated tiny data, for CPU runs.

Tests and the demo take the shipped configs unchanged and apply these
overrides: data roots and annotation files of the generated data, small
images, no model-zoo downloads, single-process data loading and a short
schedule. Nothing here changes how a config trains at full scale.
"""
import os.path as osp
from typing import Any, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict

RESIZE_TYPES = ('Resize', 'RandomResize', 'RandomChoiceResize')


def walk_dicts(obj: Any):
    """Yield every dict nested in ``obj`` (dicts and lists)."""
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from walk_dicts(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from walk_dicts(v)


def no_pretrained(model_cfg: dict) -> None:
    """Drop ``init_cfg=dict(type='Pretrained', ...)`` so nothing downloads."""
    for d in walk_dicts(model_cfg):
        init = d.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            d['init_cfg'] = None
        if 'pretrained' in d and isinstance(d['pretrained'], str):
            d['pretrained'] = None


def set_num_classes(model_cfg: dict, num_classes: int) -> None:
    """Set every ``num_classes`` of a host model dict."""
    for d in walk_dicts(model_cfg):
        if 'num_classes' in d:
            d['num_classes'] = num_classes


def host_models(cfg: Config) -> list:
    """The host model dicts of a config: the model, or student/teacher(s)."""
    model = cfg.model
    if 'student' in model:
        teachers = [model.get('teacher')] + [
            t.get('config') for t in (model.get('teachers') or {}).values()
        ]
        return [m for m in [model.student] + teachers if isinstance(m, dict)]
    return [model]


#: Multi-image transforms (RTMDet, YOLOX) whose output size is ``img_scale``.
MIX_TYPES = ('Mosaic', 'CachedMosaic', 'MixUp', 'CachedMixUp')


def inline_hub_teacher(cfg: Config) -> None:
    """Replace a ``'mmpretrain::...'`` teacher path by its model dict.

    Logits distillation needs the teacher's ``num_classes`` to be the tiny
    data's; a dict can be changed, a path cannot. Local paths are kept
    (they are what relative-path resolution is tested with).
    """
    from mmkd_channel.models.distillers.host_models import host_model_cfg
    teacher = cfg.model.get('teacher') if 'student' in cfg.model else None
    if isinstance(teacher, str) and '::' in teacher:
        cfg.model.teacher = host_model_cfg(teacher, 'teacher')


def shrink_pipeline(pipeline: Sequence[dict], scale: tuple) -> None:
    """Make every resize produce at most ``scale`` (w, h).

    Mosaic / mix-up sizes, detection crops, fixed pads and YOLOX's affine
    border follow, so RTMDet and YOLOX pipelines stay at ``scale`` too.
    """
    w, h = scale
    for t in pipeline:
        kind = t.get('type')
        if kind in RESIZE_TYPES:
            t['scale'] = tuple(scale)
            t.pop('ratio_range', None)
            t.pop('scales', None)
            t['type'] = 'Resize'
            t.setdefault('keep_ratio', True)
        elif kind in MIX_TYPES:
            t['img_scale'] = (w, h)
            if 'max_cached_images' in t:
                t['max_cached_images'] = min(t['max_cached_images'], 4)
        elif kind == 'RandomAffine' and 'border' in t:
            t['border'] = (-w // 2, -h // 2)
        elif kind == 'RandomCrop' and 'crop_size' in t and t.get(
                'crop_type', 'absolute') == 'absolute':
            t['crop_size'] = (h, w)
        elif kind == 'Pad' and t.get('size') is not None:
            t['size'] = (w, h)


def dataset_levels(dataset: dict) -> list:
    """A dataset dict and the ones it wraps (``MultiImageMixDataset``,
    ``RepeatDataset``, ...), outermost first."""
    levels = [dataset]
    while isinstance(levels[-1].get('dataset'), dict):
        levels.append(levels[-1]['dataset'])
    return levels


def shrink_host_hooks(cfg: Config, scale: tuple) -> None:
    """Tiny runs of host hooks that switch pipelines or modes late.

    ``PipelineSwitchHook`` switches at epoch 0 (to a shrunk pipeline) and
    YOLOX's mode switch happens in the first epoch (its
    ``num_last_epochs`` covers the 1-epoch run), so the switch itself runs.
    """
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') == 'PipelineSwitchHook':
            hook['switch_epoch'] = 0
            shrink_pipeline(hook['switch_pipeline'], scale)
        elif hook.get('type') == 'YOLOXModeSwitchHook':
            hook['num_last_epochs'] = max(hook.get('num_last_epochs', 1), 1)


def drop_late_schedulers(cfg: Config, max_epochs: int) -> None:
    """Drop the ``param_scheduler`` entries that start after the tiny run.

    A host schedule such as ShuffleNetV2's (``PolyLR`` from iteration
    5000) makes MMEngine refuse an entry whose ``begin`` lies beyond the
    end of the run. Iteration-based entries that begin after iteration 0
    start after a run of a few iterations; epoch-based ones after
    ``max_epochs``.
    """
    scheds = cfg.get('param_scheduler')
    if not scheds:
        return
    single = isinstance(scheds, dict)
    kept = [
        s for s in ([scheds] if single else scheds)
        if s.get('begin', 0) < (max_epochs if s.get('by_epoch', True) else 1)
    ]
    cfg.param_scheduler = kept[0] if single and kept else kept


def common_overrides(cfg: Config,
                     work_dir: str,
                     max_epochs: int = 1,
                     seed: int = 0) -> None:
    """Schedule, logging, hooks, determinism and the CPU backend."""
    if 'student' in cfg.model:
        cfg.model.teacher_ckpt = None
        for teacher in (cfg.model.get('teachers') or {}).values():
            teacher.ckpt = None  # nothing downloads
    for m in host_models(cfg):
        no_pretrained(m)
    cfg.work_dir = work_dir
    cfg.train_cfg = ConfigDict(
        type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=True)
    drop_late_schedulers(cfg, max_epochs)
    cfg.randomness = dict(seed=seed, deterministic=False)
    if not torch.cuda.is_available():
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
        optim = cfg.get('optim_wrapper')
        if optim is not None and optim.get('type') == 'AmpOptimWrapper':
            optim.type = 'OptimWrapper'  # MMEngine refuses AMP on CPU
            optim.pop('loss_scale', None)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(key)
        if dl is not None:
            dl.num_workers = 0
            dl.persistent_workers = False


def tiny_det_config(cfg: Config,
                    data: dict,
                    work_dir: str,
                    img_scale: tuple = (128, 128),
                    max_epochs: int = 1,
                    batch_size: int = 2,
                    seed: int = 0,
                    metrics: Optional[Sequence[str]] = None) -> Config:
    """Point an mmdet COCO config at :func:`make_coco_detection` data.

    Works for detectors and instance segmenters alike: the generated
    annotations carry boxes and polygons, so a Mask R-CNN config keeps its
    ``CocoMetric(metric=['bbox', 'segm'])`` and reports both.

    Args:
        cfg (Config): A loaded mmdet config (baseline or distillation).
        data (dict): What :func:`make_coco_detection` returned.
        work_dir (str): Work directory of the run.
        img_scale (tuple): ``(w, h)`` every resize produces at most.
        max_epochs (int): Epochs.
        batch_size (int): Training batch size.
        seed (int): Random seed.
        metrics (Sequence[str], optional): Replace the evaluator's metrics;
            ``None`` keeps the host's (``bbox``, plus ``segm`` for Mask
            R-CNN).

    Returns:
        Config: ``cfg``, modified in place.
    """
    classes = tuple(data['classes'])
    common_overrides(cfg, work_dir, max_epochs, seed)
    for m in host_models(cfg):
        set_num_classes(m, len(classes))
    splits = dict(
        train_dataloader=(data['train_ann'], data['train_img']),
        val_dataloader=(data['val_ann'], data['val_img']),
        test_dataloader=(data['val_ann'], data['val_img']))
    for key, (ann, img) in splits.items():
        dl = cfg.get(key)
        if dl is None:
            continue
        levels = dataset_levels(dl.dataset)
        ds = levels[-1]
        ds.data_root = data['data_root']
        ds.ann_file = ann
        ds.data_prefix = dict(img=img)
        ds.metainfo = dict(classes=classes)
        for level in levels:
            if level.get('pipeline') is not None:
                shrink_pipeline(level['pipeline'], img_scale)
        if key == 'train_dataloader':
            dl.batch_size = batch_size
        for level in levels[:-1]:  # one pass over the tiny data per epoch
            if 'times' in level:
                level['times'] = 1
    shrink_host_hooks(cfg, img_scale)
    # YOLOX resizes whole batches to a random multiple of 32 in 480..800
    side = max(32, 32 * (min(img_scale) // 32))
    for d in walk_dicts(cfg.model):
        if d.get('type') == 'BatchSyncRandomResize':
            d['random_size_range'] = (side, side)
        elif d.get('type') == 'BatchFixedSizePad':  # FCOS / LSJ configs
            d['size'] = (side, side)
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(key)
        if ev is not None:
            ev.ann_file = osp.join(data['data_root'], data['val_ann'])
            if metrics is not None:
                ev.metric = list(metrics)
    return cfg


def replace_sync_bn(cfg: Any) -> None:
    """Turn every ``norm_cfg=dict(type='SyncBN')`` nested in ``cfg`` into BN.

    SyncBN needs a process group to train; single-process CPU runs use BN.
    (The Runner also reverts SyncBN in the model it trains; a teacher given
    as a config path keeps SyncBN, which is harmless: it stays in eval mode,
    where SyncBN uses its running statistics and never synchronises.)
    """
    for d in walk_dicts(cfg):
        if d.get('type') == 'SyncBN':
            d['type'] = 'BN'


def _train_by_epoch(cfg: Config) -> None:
    """Replace an infinite sampler so one epoch is one pass over the data."""
    dl = cfg.get('train_dataloader')
    if dl is not None and 'Infinite' in dl.sampler.get('type', ''):
        dl.sampler = dict(type='DefaultSampler', shuffle=True)


def tiny_seg_config(cfg: Config,
                    data: dict,
                    work_dir: str,
                    img_scale: tuple = (128, 64),
                    crop_size: tuple = (64, 64),
                    max_epochs: int = 1,
                    batch_size: int = 2,
                    seed: int = 0) -> Config:
    """Point an mmseg Cityscapes config at :func:`make_cityscapes` data.

    Args:
        cfg (Config): A loaded mmseg config (baseline or distillation).
        data (dict): What :func:`make_cityscapes` returned.
        work_dir (str): Work directory of the run.
        img_scale (tuple): ``(w, h)`` every resize produces at most.
        crop_size (tuple): ``(h, w)`` of the training crop; also the size
            the data preprocessor pads training batches to.
        max_epochs (int): Epochs; the 80k-iteration loop becomes an epoch
            loop over the tiny data.
        batch_size (int): Training batch size.
        seed (int): Random seed.

    Returns:
        Config: ``cfg``, modified in place. SyncBN becomes BN in every model
        dict (a teacher given as a config path is left as it is).
    """
    common_overrides(cfg, work_dir, max_epochs, seed)
    _train_by_epoch(cfg)
    replace_sync_bn(cfg.model)
    splits = dict(
        train_dataloader=(data['img_dir'], data['ann_dir']),
        val_dataloader=(data['val_img_dir'], data['val_ann_dir']),
        test_dataloader=(data['val_img_dir'], data['val_ann_dir']))
    for key, (img, ann) in splits.items():
        dl = cfg.get(key)
        if dl is None:
            continue
        ds = dl.dataset
        ds.data_root = data['data_root']
        ds.data_prefix = dict(img_path=img, seg_map_path=ann)
        shrink_pipeline(ds.pipeline, img_scale)
        for t in ds.pipeline:
            if t.get('type') == 'RandomCrop':
                t['crop_size'] = tuple(crop_size)
        if key == 'train_dataloader':
            dl.batch_size = batch_size
    # mmseg pads training batches to the crop size
    for d in walk_dicts([cfg.model, cfg.get('data_preprocessor')]):
        if d.get('type') == 'SegDataPreProcessor' and d.get('size'):
            d['size'] = tuple(crop_size)
    return cfg


def tiny_cls_config(cfg: Config,
                    data: dict,
                    work_dir: str,
                    img_size: int = 64,
                    max_epochs: int = 1,
                    batch_size: int = 2,
                    seed: int = 0) -> Config:
    """Point an mmpretrain ImageNet config at :func:`make_imagenet` data.

    Args:
        cfg (Config): A loaded mmpretrain config (baseline or distillation).
        data (dict): What :func:`make_imagenet` returned (the
            ``meta/{train,val}.txt`` annotation format is used).
        work_dir (str): Work directory of the run.
        img_size (int): Side of the training crop and of the centre crop
            (test images are first resized to ``img_size * 8 // 7``).
        max_epochs (int): Epochs.
        batch_size (int): Training and validation batch size.
        seed (int): Random seed.

    Returns:
        Config: ``cfg``, modified in place: classes and ``num_classes`` of
        the data, top-1 accuracy only (top-5 needs at least 5 classes).
    """
    classes = list(data['classes'])
    common_overrides(cfg, work_dir, max_epochs, seed)
    inline_hub_teacher(cfg)
    for m in host_models(cfg):
        set_num_classes(m, len(classes))
        for d in walk_dicts(m):  # 64 px is less than one 7x7 window
            if d.get('type') == 'SwinTransformer':
                d['pad_small_map'] = True
    if cfg.get('data_preprocessor') is not None:
        cfg.data_preprocessor.num_classes = len(classes)
    sizes = dict(
        RandomResizedCrop=('scale', img_size),
        ResizeEdge=('scale', img_size * 8 // 7),
        CenterCrop=('crop_size', img_size))
    splits = dict(
        train_dataloader=(data['train_ann'], data['train_prefix']),
        val_dataloader=(data['val_ann'], data['val_prefix']),
        test_dataloader=(data['val_ann'], data['val_prefix']))
    for key, (ann, prefix) in splits.items():
        dl = cfg.get(key)
        if dl is None:
            continue
        ds = dl.dataset
        ds.pop('split', None)
        ds.data_root = data['data_root']
        ds.ann_file = ann
        ds.data_prefix = prefix
        ds.metainfo = dict(classes=classes)
        for t in ds.pipeline:
            if t.get('type') in sizes:
                name, value = sizes[t['type']]
                t[name] = value
        dl.batch_size = batch_size
    for d in walk_dicts([
            host_models(cfg),
            cfg.get('val_evaluator'),
            cfg.get('test_evaluator')
    ]):
        if 'topk' in d:
            d['topk'] = (1, )
    return cfg


#: Innermost training dataset type -> (data kind, override).
TINY_BY_DATASET = dict(
    CocoDataset=('coco', tiny_det_config),
    CityscapesDataset=('cityscapes', tiny_seg_config),
    ImageNet=('imagenet', tiny_cls_config))


def train_dataset_type(cfg: Config) -> str:
    """Type of the dataset the training data comes from (unwrapped)."""
    return dataset_levels(cfg.train_dataloader.dataset)[-1]['type']


def tiny_config(cfg: Config, data: dict, work_dir: str, **kwargs) -> Config:
    """Apply the tiny-data override that fits the config's dataset.

    Args:
        cfg (Config): A loaded mmdet (COCO), mmseg (Cityscapes) or
            mmpretrain (ImageNet) config, baseline or distillation.
        data (dict): ``kind -> what make_<kind>() returned`` for the kinds
            of :data:`TINY_BY_DATASET` (``'coco'``, ``'cityscapes'``,
            ``'imagenet'``); only the config's kind is needed.
        work_dir (str): Work directory of the run.
        **kwargs: Passed to the override (``max_epochs``, ``seed``, ...).

    Returns:
        Config: ``cfg``, modified in place.
    """
    kind = train_dataset_type(cfg)
    if kind not in TINY_BY_DATASET:
        raise KeyError(f'no tiny-data override for dataset {kind!r}; '
                       f'known: {sorted(TINY_BY_DATASET)}')
    name, override = TINY_BY_DATASET[kind]
    return override(cfg, data[name], work_dir, **kwargs)
