"""Tiny ImageNet-format classification data: generated patterns, or
scikit-learn's digits (the one real dataset available offline).

Both are written in the two layouts mmpretrain reads (class folders and
``meta/*.txt`` annotation files), so either ``ImageNet`` or
``CustomDataset`` configs can point at them.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .common import PathLike, class_pattern, make_rng, prepare_root, save_image


def _write_class_folders(
        root: Path, classes: Sequence[str],
        splits: Dict[str, List[Tuple[str, int, np.ndarray]]]) -> None:
    """Write ImageNet-style ``<split>/<class>/<file>`` + ``meta/<split>.txt``.

    ``splits`` maps a split name to ``(file_name, label, image)`` samples.
    """
    (root / 'meta').mkdir(parents=True, exist_ok=True)
    for split, samples in splits.items():
        lines = []
        for name, label, img in samples:
            rel = f'{classes[label]}/{name}'
            save_image(img, root / split / rel,
                       **({
                           'quality': 95
                       } if name.endswith('.JPEG') else {}))
            lines.append(f'{rel} {label}\n')
        (root / 'meta' / f'{split}.txt').write_text(''.join(lines))
    (root / 'meta' / 'classes.txt').write_text(''.join(f'{c}\n'
                                                       for c in classes))


def _imagenet_result(root: Path, classes: Sequence[str]) -> dict:
    return dict(
        data_root=str(root),
        classes=list(classes),
        train_ann='meta/train.txt',
        val_ann='meta/val.txt',
        train_prefix='train',
        val_prefix='val',
        classes_file='meta/classes.txt')


def make_imagenet(root: PathLike,
                  num_classes: int = 4,
                  per_class_train: int = 8,
                  per_class_val: int = 4,
                  img_size: Tuple[int, int] = (64, 64),
                  seed: int = 0) -> dict:
    """Write a tiny ImageNet-format classification dataset.

    Writes both layouts mmpretrain reads: class folders
    ``{train,val}/<wnid>/<name>.JPEG`` and annotation files
    ``meta/{train,val}.txt`` with lines ``<wnid>/<name>.JPEG <label>``
    (relative to ``train/`` or ``val/``). Synsets are ``n00000000``,
    ``n00000001``, ...; sorted folder order equals label order. Also writes
    ``meta/classes.txt`` (one wnid per line): mmpretrain does not read it by
    itself, but accepts its path as the ``classes=`` argument.

    ``mmpretrain.datasets.ImageNet`` defaults to the 1000 ImageNet classes,
    so pass the classes, e.g. ``ImageNet(data_root=r['data_root'],
    split='train', metainfo=dict(classes=r['classes']))`` (uses
    ``meta/train.txt`` automatically) or ``CustomDataset(
    data_root=r['data_root'], data_prefix='train')`` (class folders).

    Args:
        root: Output directory.
        num_classes: Number of classes.
        per_class_train: Training images per class.
        per_class_val: Validation images per class.
        img_size: Image ``(height, width)``.
        seed: Random seed.

    Returns:
        dict: ``data_root``, ``classes`` (wnids), ``train_ann``, ``val_ann``,
        ``train_prefix``, ``val_prefix``, ``classes_file``.
    """
    root = prepare_root(root)
    classes = [f'n{i:08d}' for i in range(num_classes)]
    splits = {}
    for stream, (split, per_class) in enumerate([('train', per_class_train),
                                                 ('val', per_class_val)]):
        rng, samples = make_rng(seed, stream), []
        for label, wnid in enumerate(classes):
            for j in range(per_class):
                name = (f'{wnid}_{j:05d}.JPEG' if split == 'train' else
                        f'ILSVRC2012_val_{label * per_class + j + 1:08d}.JPEG')
                img = class_pattern(rng, label, num_classes, img_size)
                samples.append((name, label, img))
        splits[split] = samples
    _write_class_folders(root, classes, splits)
    return _imagenet_result(root, classes)


def make_digits_imagenet(root: PathLike,
                         img_size: int = 32,
                         train_per_class: Optional[int] = None,
                         seed: int = 0,
                         num_train: int = 300) -> dict:
    """Write scikit-learn's digits (1797 8x8 images) in ImageNet format.

    Same layout as :func:`make_imagenet` with class folders ``digit_0`` ...
    ``digit_9``; images are grey 8x8 digits bilinearly upsampled to
    ``img_size`` and saved as RGB PNG. The split is stratified: ``num_train``
    images in total (spread as evenly as possible over the classes), or
    exactly ``train_per_class`` per class if given; the rest is ``val``.

    Args:
        root: Output directory.
        img_size: Output side length in pixels.
        train_per_class: Training images per class; overrides ``num_train``.
        seed: Random seed of the split.
        num_train: Total training images (ignored if ``train_per_class``).

    Returns:
        dict: as :func:`make_imagenet`.
    """
    from sklearn.datasets import load_digits

    root = prepare_root(root)
    digits = load_digits()
    classes = [f'digit_{d}' for d in range(10)]
    rng = make_rng(seed, 0)
    splits = {'train': [], 'val': []}
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == label))
        quota = (
            train_per_class if train_per_class is not None else
            num_train // 10 + int(label < num_train % 10))
        for k, i in enumerate(idx):
            grey = Image.fromarray(
                (digits.images[i] * 255 / 16).astype(np.uint8)).resize(
                    (img_size, img_size), Image.BILINEAR)
            img = np.asarray(grey.convert('RGB'), dtype=np.float64)
            split = 'train' if k < quota else 'val'
            splits[split].append((f'{i:04d}.png', label, img))
    _write_class_folders(root, classes, splits)
    return _imagenet_result(root, classes)
