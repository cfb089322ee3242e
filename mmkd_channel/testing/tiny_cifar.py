"""Shrink an mmpretrain CIFAR-100 config to :func:`make_cifar100` data."""
from mmengine.config import Config

from .tiny_configs import common_overrides, walk_dicts
from .tiny_data import tiny_cifar100_cls


def tiny_cifar_config(cfg: Config,
                      data: dict,
                      work_dir: str,
                      max_epochs: int = 1,
                      batch_size: int = 2,
                      seed: int = 0) -> Config:
    """Point an mmpretrain CIFAR-100 config at the generated tiny data.

    The real ``CIFAR100`` dataset always checks the md5 of the original
    files, so every CIFAR dataset becomes ``TinyCIFAR100`` (registered by
    :func:`tiny_cifar100_cls`), reading the same format from
    ``data['data_root']``. Images stay 32x32 and ``num_classes`` stays 100
    (the tiny data uses labels 0..4 of the 100 CIFAR-100 classes).

    Args:
        cfg (Config): A loaded CIFAR-100 config (baseline or distillation).
        data (dict): What :func:`make_cifar100` returned.
        work_dir (str): Work directory of the run.
        max_epochs (int): Epochs.
        batch_size (int): Training and validation batch size.
        seed (int): Random seed.

    Returns:
        Config: ``cfg``, modified in place; top-1 accuracy only.

    Examples:
        >>> import tempfile
        >>> from mmengine.config import Config
        >>> from mmkd_channel.testing import make_cifar100
        >>> from mmkd_channel.utils.mim import resolve_config_path
        >>> cfg = Config.fromfile(resolve_config_path(
        ...     'mmpretrain::resnet/resnet50_8xb16_cifar100.py'))
        >>> tmp = tempfile.mkdtemp()
        >>> cfg = tiny_cifar_config(cfg, make_cifar100(tmp), tmp)
        >>> cfg.train_dataloader.dataset.type
        'TinyCIFAR100'
    """
    tiny_cifar100_cls()
    common_overrides(cfg, work_dir, max_epochs, seed)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(key)
        if dl is None:
            continue
        ds = dl.dataset
        if 'CIFAR' not in ds.type:
            raise ValueError(f'tiny_cifar_config: {key} reads {ds.type!r}, '
                             'not a CIFAR dataset')
        ds.type = 'TinyCIFAR100'
        ds.data_root = data['data_root']
        ds.download = False
        dl.batch_size = batch_size
    for d in walk_dicts([cfg.get('val_evaluator'), cfg.get('test_evaluator')]):
        if 'topk' in d:
            d['topk'] = (1, )
    return cfg
