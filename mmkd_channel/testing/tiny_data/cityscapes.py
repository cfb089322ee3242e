"""Tiny Cityscapes-format semantic segmentation data.

Toy street scenes (sky, buildings, trees, road, cars) written as the
``leftImg8bit`` images and ``gtFine`` train-id maps mmseg's
``CityscapesDataset`` reads, coloured with the Cityscapes palette.
"""
from typing import Tuple

import numpy as np

from .common import PathLike, make_rng, prepare_root, save_image

# Cityscapes train ids used by the toy street scenes, with their palette.
_CITY_COLOURS = {
    0: (128, 64, 128),
    2: (70, 70, 70),
    8: (107, 142, 35),
    10: (70, 130, 180),
    13: (0, 0, 142)
}


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
    root = prepare_root(root)
    splits = [('train', 'aachen', num_train), ('val', 'frankfurt', num_val)]
    for stream, (split, city, num) in enumerate(splits):
        rng = make_rng(seed, stream)
        for i in range(num):
            stem = f'{city}_000000_{i:06d}'
            label, img = _street_scene(rng, img_size)
            save_image(
                img, root / 'leftImg8bit' / split / city /
                f'{stem}_leftImg8bit.png')
            save_image(
                label, root / 'gtFine' / split / city /
                f'{stem}_gtFine_labelTrainIds.png')
    return dict(
        data_root=str(root),
        img_dir='leftImg8bit/train',
        ann_dir='gtFine/train',
        val_img_dir='leftImg8bit/val',
        val_ann_dir='gtFine/val',
        train_ids=sorted(_CITY_COLOURS))
