"""Tiny COCO-format detection / instance segmentation data.

Filled shapes on a noisy background, with the polygon, box and area
annotations mmdet's ``CocoDataset`` reads; a class is a shape and a hue,
so a detector can learn it in a few iterations.
"""
import json
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .common import PathLike, hue_colour, make_rng, prepare_root, save_image

_SHAPES = ('square', 'circle', 'triangle')


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
        colour = hue_colour(rng, label / len(classes))
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
    root, classes = prepare_root(root), tuple(classes)
    categories = [
        dict(id=i + 1, name=c, supercategory='shape')
        for i, c in enumerate(classes)
    ]
    for stream, (split, num) in enumerate([('train', num_train),
                                           ('val', num_val)]):
        rng, images, anns = make_rng(seed, stream), [], []
        for i in range(num):
            img_id, file_name = i + 1, f'{i + 1:012d}.jpg'
            arr, objects = _coco_image(rng, img_size, classes)
            save_image(arr, root / f'{split}2017' / file_name, quality=95)
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
