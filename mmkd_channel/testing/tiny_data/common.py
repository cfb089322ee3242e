"""What every tiny dataset writer shares: seeded streams, image saving and
the class pattern the classification sets draw.

Each ``(seed, stream)`` pair gets its own generator, so the train and val
splits of a dataset do not depend on each other's size; images are clipped
to uint8 on save, so writers can work in floats.
"""
import colorsys
import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]


def make_rng(seed: int, stream: int) -> np.random.Generator:
    """Independent deterministic generator for one ``(seed, stream)``."""
    return np.random.default_rng([seed, stream])


def prepare_root(root: PathLike) -> Path:
    """``root`` made absolute and created if missing."""
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def save_image(arr: np.ndarray, path: Path, **kwargs) -> None:
    """Clip ``arr`` to uint8 and save it (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, **kwargs)


def hue_colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A saturated RGB colour (0..255) close to ``hue``."""
    h = (hue + rng.uniform(-0.03, 0.03)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1))
    return np.array(rgb) * 255


def class_pattern(rng: np.random.Generator, label: int, num_classes: int,
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
    fg = hue_colour(rng, label / num_classes)
    img = np.where(mask[..., None], fg, fg * 0.3)
    return img + rng.normal(0, 10, (h, w, 3))
