"""Tiny CIFAR-100 in the original python-pickle format, and the dataset
class that reads it.

The real files are Python 2 pickles; :class:`_Py2Pickler` writes the same
opcodes so both ``encoding='bytes'`` and ``encoding='latin1'`` readers see
what they see on the real data. mmpretrain's ``CIFAR100`` checks the md5 of
the real files, hence :func:`tiny_cifar100_cls`.
"""
import pickle
import struct
from pathlib import Path

import numpy as np

from .common import PathLike, class_pattern, make_rng, prepare_root

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
    root = prepare_root(root)
    folder = root / 'cifar-100-python'
    folder.mkdir(parents=True, exist_ok=True)
    num_used = len(_CIFAR_USED_COARSE)
    for stream, (split, num) in enumerate([('train', num_train),
                                           ('test', num_val)]):
        rng = make_rng(seed, stream)
        labels = [int(v) for v in rng.permutation(np.arange(num) % num_used)]
        imgs = [class_pattern(rng, y, num_used, (32, 32)) for y in labels]
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
