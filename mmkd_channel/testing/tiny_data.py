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
import colorsys
import json
import os
import pickle
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

PathLike = Union[str, os.PathLike]

# The 100 fine and 20 coarse names of CIFAR-100, in label order.
CIFAR100_FINE_NAMES = (
    'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle',
    'bicycle', 'bottle', 'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel',
    'can', 'castle', 'caterpillar', 'cattle', 'chair', 'chimpanzee', 'clock',
    'cloud', 'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur',
    'dolphin', 'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster',
    'house', 'kangaroo', 'keyboard', 'lamp', 'lawn_mower', 'leopard', 'lion',
    'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain',
    'mouse', 'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree',
    'pear', 'pickup_truck', 'pine_tree', 'plain', 'plate', 'poppy',
    'porcupine', 'possum', 'rabbit', 'raccoon', 'ray', 'road', 'rocket',
    'rose', 'sea', 'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail',
    'snake', 'spider', 'squirrel', 'streetcar', 'sunflower', 'sweet_pepper',
    'table', 'tank', 'telephone', 'television', 'tiger', 'tractor', 'train',
    'trout', 'tulip', 'turtle', 'wardrobe', 'whale', 'willow_tree', 'wolf',
    'woman', 'worm')
CIFAR100_COARSE_NAMES = ('aquatic_mammals', 'fish', 'flowers',
                         'food_containers', 'fruit_and_vegetables',
                         'household_electrical_devices', 'household_furniture',
                         'insects', 'large_carnivores',
                         'large_man-made_outdoor_things',
                         'large_natural_outdoor_scenes',
                         'large_omnivores_and_herbivores', 'medium_mammals',
                         'non-insect_invertebrates', 'people', 'reptiles',
                         'small_mammals', 'trees', 'vehicles_1', 'vehicles_2')
# Real coarse labels of fine labels 0..4 (apple, aquarium_fish, baby, ...).
_CIFAR_USED_COARSE = (4, 1, 14, 8, 0)

# Cityscapes train ids used by the toy street scenes, with their palette.
_CITY_COLOURS = {
    0: (128, 64, 128),
    2: (70, 70, 70),
    8: (107, 142, 35),
    10: (70, 130, 180),
    13: (0, 0, 142)
}
_SHAPES = ('square', 'circle', 'triangle')


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------
def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent deterministic generator for one ``(seed, stream)``."""
    return np.random.default_rng([seed, stream])


def _prepare(root: PathLike) -> Path:
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _save(arr: np.ndarray, path: Path, **kwargs) -> None:
    """Clip ``arr`` to uint8 and save it (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, **kwargs)


def _hue_colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A saturated RGB colour (0..255) close to ``hue``."""
    h = (hue + rng.uniform(-0.03, 0.03)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1))
    return np.array(rgb) * 255


def _class_pattern(rng: np.random.Generator, label: int, num_classes: int,
                   size: Tuple[int, int]) -> np.ndarray:
    """Float HxWx3 image of class ``label``: a class hue and a class texture.

    Textures cycle through horizontal stripes, vertical stripes, checkerboard
    and a disk; the hue is ``label / num_classes``. Phase, period, colour and
    noise vary per sample.
    """
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    period = rng.uniform(0.15, 0.25) * max(h, w)
    phase = rng.uniform(0, 2 * np.pi)
    sy = np.sin(2 * np.pi * yy / period + phase) > 0
    sx = np.sin(2 * np.pi * xx / period + phase) > 0
    kind = label % 4
    if kind == 0:
        mask = sy
    elif kind == 1:
        mask = sx
    elif kind == 2:
        mask = sx ^ sy
    else:
        cy, cx = np.array([h, w]) * rng.uniform(0.4, 0.6, 2)
        radius = min(h, w) * rng.uniform(0.25, 0.38)
        mask = (yy - cy)**2 + (xx - cx)**2 < radius**2
    fg = _hue_colour(rng, label / num_classes)
    img = np.where(mask[..., None], fg, fg * 0.3)
    return img + rng.normal(0, 10, (h, w, 3))


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
            _save(img, root / split / rel,
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


# --------------------------------------------------------------------------
# COCO detection / instance segmentation
# --------------------------------------------------------------------------
def _shape_polygon(shape: str, x0: float, y0: float, s: float) -> List[float]:
    """Flat ``[x1, y1, ...]`` polygon of ``shape`` in the box (x0, y0, s)."""
    if shape == 'square':
        pts = [(x0, y0), (x0 + s, y0), (x0 + s, y0 + s), (x0, y0 + s)]
    elif shape == 'triangle':
        pts = [(x0 + s / 2, y0), (x0 + s, y0 + s), (x0, y0 + s)]
    else:  # circle as a 16-gon touching the box on all four sides
        a = np.arange(16) * 2 * np.pi / 16
        pts = list(
            zip(x0 + s / 2 * (1 + np.cos(a)), y0 + s / 2 * (1 + np.sin(a))))
    return [round(float(v), 2) for p in pts for v in p]


def _polygon_area(poly: List[float]) -> float:
    """Shoelace area of a flat polygon."""
    x, y = np.array(poly[0::2]), np.array(poly[1::2])
    cross = np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))
    return float(abs(cross) / 2)


def _noisy_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-saturation grey background with a soft wave texture and noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    fy, fx = rng.uniform(0.02, 0.1, 2)
    wave = 15 * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 6))
    base = rng.uniform(90, 150) + rng.uniform(-10, 10, 3)
    return base + wave[..., None] + rng.normal(0, 10, (h, w, 3))


def _coco_image(rng: np.random.Generator, img_size: Tuple[int, int],
                classes: Sequence[str]) -> Tuple[np.ndarray, List[dict]]:
    """One image with 1-3 non-overlapping shapes and their annotations."""
    h, w = img_size
    img = Image.fromarray(
        np.clip(_noisy_background(rng, h, w), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    boxes, objects = [], []
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(50):
            s = int(rng.integers(20, min(60, h - 2, w - 2) + 1))
            x0, y0 = int(rng.integers(1, w - s)), int(rng.integers(1, h - s))
            if all(x0 + s + 2 < bx or bx + bs + 2 < x0 or y0 + s +
                   2 < by or by + bs + 2 < y0 for bx, by, bs in boxes):
                break
        else:
            continue
        boxes.append((x0, y0, s))
        label = int(rng.integers(len(classes)))
        name = classes[label]
        shape = name if name in _SHAPES else _SHAPES[label % len(_SHAPES)]
        poly = _shape_polygon(shape, x0, y0, s)
        colour = _hue_colour(rng, label / len(classes))
        draw.polygon(poly, fill=tuple(int(c) for c in colour))
        objects.append(dict(category_id=label + 1, segmentation=[poly]))
    arr = np.asarray(img, dtype=np.float64) + rng.normal(0, 5, (h, w, 3))
    for obj in objects:
        poly = obj['segmentation'][0]
        xs, ys = poly[0::2], poly[1::2]
        w_box, h_box = max(xs) - min(xs), max(ys) - min(ys)
        obj['bbox'] = [min(xs), min(ys), round(w_box, 2), round(h_box, 2)]
        obj['area'] = round(_polygon_area(poly), 2)
        obj['iscrowd'] = 0
    return arr, objects


def make_coco_detection(root: PathLike,
                        num_train: int = 24,
                        num_val: int = 8,
                        img_size: Tuple[int, int] = (128, 128),
                        classes: Sequence[str] = ('square', 'circle',
                                                  'triangle'),
                        seed: int = 0) -> dict:
    """Write a tiny COCO-format detection / instance segmentation dataset.

    Layout: ``train2017/*.jpg``, ``val2017/*.jpg`` and
    ``annotations/instances_{train,val}2017.json``. Each image holds 1-3
    non-overlapping filled shapes (20-60 px) on a noisy grey background.
    A class has its own shape (by name if it is ``square``, ``circle`` or
    ``triangle``, else cycling) and its own hue. Annotations carry a polygon
    ``segmentation`` tracing the shape, its tight ``bbox`` ``[x, y, w, h]``
    and its polygon ``area``; category ids start at 1.

    Load with ``mmdet.datasets.CocoDataset(data_root=r['data_root'],
    ann_file=r['train_ann'], data_prefix=dict(img=r['train_img']),
    metainfo=dict(classes=r['classes']), pipeline=[])``.

    Args:
        root: Output directory.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Image ``(height, width)``.
        classes: Category names.
        seed: Random seed.

    Returns:
        dict: ``data_root``, ``classes``, ``train_ann``, ``val_ann``,
        ``train_img``, ``val_img``.
    """
    root, classes = _prepare(root), tuple(classes)
    categories = [
        dict(id=i + 1, name=c, supercategory='shape')
        for i, c in enumerate(classes)
    ]
    for stream, (split, num) in enumerate([('train', num_train),
                                           ('val', num_val)]):
        rng, images, anns = _rng(seed, stream), [], []
        for i in range(num):
            img_id, file_name = i + 1, f'{i + 1:012d}.jpg'
            arr, objects = _coco_image(rng, img_size, classes)
            _save(arr, root / f'{split}2017' / file_name, quality=95)
            images.append(
                dict(
                    id=img_id,
                    file_name=file_name,
                    height=img_size[0],
                    width=img_size[1]))
            for obj in objects:
                anns.append(dict(id=len(anns) + 1, image_id=img_id, **obj))
        ann_path = root / 'annotations' / f'instances_{split}2017.json'
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        ann_path.write_text(
            json.dumps(
                dict(images=images, annotations=anns, categories=categories)))
    return dict(
        data_root=str(root),
        classes=classes,
        train_ann='annotations/instances_train2017.json',
        val_ann='annotations/instances_val2017.json',
        train_img='train2017/',
        val_img='val2017/')


# --------------------------------------------------------------------------
# Cityscapes semantic segmentation
# --------------------------------------------------------------------------
def _street_scene(rng: np.random.Generator,
                  img_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Label map (train ids) and matching image of a toy street scene."""
    h, w = img_size
    label = np.full((h, w), 10, np.uint8)  # sky
    horizon = int(h * rng.uniform(0.3, 0.45))
    road_top = int(h * rng.uniform(0.6, 0.7))
    x = 0
    while x < w:  # buildings and trees between sky and road
        bw = int(rng.integers(w // 10, w // 4))
        top = int(rng.integers(h // 10, horizon + 1))
        label[top:road_top, x:x + bw] = 2 if rng.random() < 0.6 else 8
        x += bw
    label[road_top:] = 0  # road
    for _ in range(int(rng.integers(1, 4))):  # cars on the road
        cw, ch = int(rng.integers(w // 10,
                                  w // 5)), int(rng.integers(h // 12, h // 6))
        cx = int(rng.integers(0, w - cw))
        cy = int(rng.integers(road_top - ch // 2, h - ch))
        label[cy:cy + ch, cx:cx + cw] = 13
    img = np.zeros((h, w, 3))
    for train_id, colour in _CITY_COLOURS.items():
        img[label == train_id] = colour
    img += rng.normal(0, 12, (h, w, 3))
    ignore = rng.random((h, w)) < 0.005  # sprinkle of ignore pixels
    label[ignore] = 255
    img[ignore] = rng.uniform(0, 255, (int(ignore.sum()), 3))
    return label, img


def make_cityscapes(root: PathLike,
                    num_train: int = 6,
                    num_val: int = 2,
                    img_size: Tuple[int, int] = (128, 256),
                    seed: int = 0) -> dict:
    """Write a tiny Cityscapes-format semantic segmentation dataset.

    Layout: ``leftImg8bit/{train,val}/<city>/<city>_000000_<NNNNNN>_
    leftImg8bit.png`` and the matching ``gtFine/.../<city>_000000_<NNNNNN>_
    gtFine_labelTrainIds.png`` (single-channel uint8 train ids). Scenes use
    sky (10), building (2), vegetation (8), road (0) and car (13), coloured
    with the Cityscapes palette plus noise; ~0.5% of pixels are 255 (ignore).
    The train city is ``aachen``, the val city ``frankfurt``.

    Load with ``mmseg.datasets.CityscapesDataset(data_root=r['data_root'],
    data_prefix=dict(img_path=r['img_dir'], seg_map_path=r['ann_dir']),
    pipeline=[])``.

    Args:
        root: Output directory.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Image ``(height, width)``.
        seed: Random seed.

    Returns:
        dict: ``data_root``, ``img_dir``, ``ann_dir``, ``val_img_dir``,
        ``val_ann_dir`` and ``train_ids`` (the train ids used).
    """
    root = _prepare(root)
    splits = [('train', 'aachen', num_train), ('val', 'frankfurt', num_val)]
    for stream, (split, city, num) in enumerate(splits):
        rng = _rng(seed, stream)
        for i in range(num):
            stem = f'{city}_000000_{i:06d}'
            label, img = _street_scene(rng, img_size)
            _save(
                img, root / 'leftImg8bit' / split / city /
                f'{stem}_leftImg8bit.png')
            _save(
                label, root / 'gtFine' / split / city /
                f'{stem}_gtFine_labelTrainIds.png')
    return dict(
        data_root=str(root),
        img_dir='leftImg8bit/train',
        ann_dir='gtFine/train',
        val_img_dir='leftImg8bit/val',
        val_ann_dir='gtFine/val',
        train_ids=sorted(_CITY_COLOURS))


# --------------------------------------------------------------------------
# ImageNet-style classification
# --------------------------------------------------------------------------
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
    root = _prepare(root)
    classes = [f'n{i:08d}' for i in range(num_classes)]
    splits = {}
    for stream, (split, per_class) in enumerate([('train', per_class_train),
                                                 ('val', per_class_val)]):
        rng, samples = _rng(seed, stream), []
        for label, wnid in enumerate(classes):
            for j in range(per_class):
                name = (f'{wnid}_{j:05d}.JPEG' if split == 'train' else
                        f'ILSVRC2012_val_{label * per_class + j + 1:08d}.JPEG')
                img = _class_pattern(rng, label, num_classes, img_size)
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

    root = _prepare(root)
    digits = load_digits()
    classes = [f'digit_{d}' for d in range(10)]
    rng = _rng(seed, 0)
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


# --------------------------------------------------------------------------
# CIFAR-100 (python pickle version)
# --------------------------------------------------------------------------
class _Py2Str(bytes):
    """Bytes pickled as a Python 2 ``str``, like the original CIFAR files."""


class _Py2Pickler(pickle._Pickler):  # pure-Python pickler: has ``dispatch``
    """Pickler writing :class:`_Py2Str` with the ``(SHORT_)BINSTRING`` opcodes.

    Such strings load as ``str`` with ``encoding='latin1'`` (what mmpretrain
    uses, keys ``'data'``) and as ``bytes`` with ``encoding='bytes'`` (keys
    ``b'data'``), exactly like the real CIFAR-100 pickles.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj: _Py2Str) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', n) + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2str


def _dump_py2(obj: dict, path: Path) -> None:
    with open(path, 'wb') as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def make_cifar100(root: PathLike,
                  num_train: int = 64,
                  num_val: int = 32,
                  seed: int = 0) -> dict:
    """Write a tiny CIFAR-100 in the original python-pickle format.

    Writes ``cifar-100-python/{train,test,meta}``: pickled dicts with keys
    ``data`` (N x 3072 uint8, R, G then B 32x32 planes, row-major),
    ``fine_labels``, ``coarse_labels``, ``filenames`` and ``batch_label``;
    ``meta`` has ``fine_label_names`` (all 100) and ``coarse_label_names``
    (all 20). Keys are Python 2 strings like the real files, so they load as
    ``b'data'`` with ``pickle.load(f, encoding='bytes')`` and as ``'data'``
    with ``encoding='latin1'`` (mmpretrain). Only fine labels 0..4 are used,
    balanced, each with a learnable colour/texture pattern.

    The stock ``mmpretrain.datasets.CIFAR100`` always verifies the md5 of the
    real files (``download=False`` only turns the failure into a
    ``RuntimeError`` instead of downloading), so no constructor argument
    makes it accept these files. Use the md5-free subclass instead::

        TinyCIFAR100 = tiny_cifar100_cls()  # also registers 'TinyCIFAR100'
        ds = TinyCIFAR100(data_root=r['data_root'], split='train',
                          download=False)   # or split='test'

    Args:
        root: Output directory (the dataset's ``data_root``).
        num_train: Number of images in ``train``.
        num_val: Number of images in ``test``.
        seed: Random seed.

    Returns:
        dict: ``data_root``, ``classes`` (the 100 fine names), ``used_labels``
        and ``base_folder`` (``'cifar-100-python'``).
    """
    root = _prepare(root)
    folder = root / 'cifar-100-python'
    folder.mkdir(parents=True, exist_ok=True)
    num_used = len(_CIFAR_USED_COARSE)
    for stream, (split, num) in enumerate([('train', num_train),
                                           ('test', num_val)]):
        rng = _rng(seed, stream)
        labels = [int(v) for v in rng.permutation(np.arange(num) % num_used)]
        imgs = [_class_pattern(rng, y, num_used, (32, 32)) for y in labels]
        data = np.stack([
            np.clip(np.rint(im), 0,
                    255).astype(np.uint8).transpose(2, 0, 1).reshape(-1)
            for im in imgs
        ])
        names = [
            _Py2Str(f'{CIFAR100_FINE_NAMES[y]}_s_{i:06d}.png'.encode())
            for i, y in enumerate(labels)
        ]
        batch = 'training' if split == 'train' else 'testing'
        _dump_py2(
            {
                _Py2Str(b'filenames'): names,
                _Py2Str(b'batch_label'): _Py2Str(
                    f'{batch} batch 1 of 1'.encode()),
                _Py2Str(b'fine_labels'): labels,
                _Py2Str(b'coarse_labels'):
                [_CIFAR_USED_COARSE[y] for y in labels],
                _Py2Str(b'data'): data,
            }, folder / split)
    _dump_py2(
        {
            _Py2Str(b'fine_label_names'):
            [_Py2Str(n.encode()) for n in CIFAR100_FINE_NAMES],
            _Py2Str(b'coarse_label_names'):
            [_Py2Str(n.encode()) for n in CIFAR100_COARSE_NAMES],
        }, folder / 'meta')
    return dict(
        data_root=str(root),
        classes=list(CIFAR100_FINE_NAMES),
        used_labels=list(range(num_used)),
        base_folder='cifar-100-python')


_TINY_CIFAR100 = None


def tiny_cifar100_cls() -> type:
    """``mmpretrain`` ``CIFAR100`` subclass that skips the md5 checks.

    Registered (once) in ``mmpretrain.registry.DATASETS`` as
    ``'TinyCIFAR100'``, so configs can use ``type='TinyCIFAR100'`` after
    calling this. Imports mmpretrain lazily.

    Returns:
        type: The dataset class; construct it like ``CIFAR100``.
    """
    global _TINY_CIFAR100
    if _TINY_CIFAR100 is None:
        from mmpretrain.datasets import CIFAR100
        from mmpretrain.registry import DATASETS

        class TinyCIFAR100(CIFAR100):
            """CIFAR100 reading local files without md5 verification."""

            train_list = [['train', None]]
            test_list = [['test', None]]
            meta = dict(CIFAR100.meta, md5=None)

        DATASETS.register_module(module=TinyCIFAR100, force=True)
        _TINY_CIFAR100 = TinyCIFAR100
    return _TINY_CIFAR100
