"""The distiller, one image and its recorded features, as training sees them.

The distiller is built from the config as the Runner builds it, the image
goes through the host's own test pipeline and preprocessor, and the
features come from the same recorders and teacher forward as in training,
so the maps drawn are the ones the loss compares.
"""
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

# load_checkpoint must go through the safe loaders whoever imports this
import mmkd_channel  # noqa: F401


def build_distiller(cfg: Config,
                    checkpoint: Optional[str] = None,
                    device: str = 'cpu') -> torch.nn.Module:
    """Build the config's ``FeatureDistiller`` as the Runner would.

    Args:
        cfg (Config): A distillation config (``model.type`` is
            ``mmkd_channel.FeatureDistiller``).
        checkpoint (str, optional): Training checkpoint to load into the
            distiller (student and connectors; the teacher is not in it).
        device (str): Device to put the model on.

    Returns:
        nn.Module: The distiller, in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = cfg.model.copy()
    # mmpretrain keeps data_preprocessor at the top level; the Runner merges
    # it into the model dict, so do the same.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    if not hasattr(model, 'distill_pairs'):
        raise TypeError(
            f'{type(model).__name__} is not a FeatureDistiller: the config '
            'must distill (model.type=mmkd_channel.FeatureDistiller).')
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False)
    return model.to(device).eval()


def find_pipeline(cfg: Config) -> list:
    """The test (else val) pipeline of a config, looking into wrappers."""
    for key in ('test_dataloader', 'val_dataloader'):
        ds = (cfg.get(key) or {}).get('dataset')
        while isinstance(ds, dict):
            if 'pipeline' in ds:
                return list(ds['pipeline'])
            ds = ds.get('dataset')
    raise KeyError('the config has no test_dataloader.dataset.pipeline (nor '
                   'a val one) to prepare the image with')


def load_batch(model: torch.nn.Module, cfg: Config, img_path: str) -> dict:
    """Run one image through the host's test pipeline and preprocessor.

    Annotation loading steps are dropped (there are no labels for an
    arbitrary image).

    Returns:
        dict: ``inputs`` (1, 3, H, W) and ``data_samples``, as the model's
        ``data_preprocessor`` returns them.
    """
    if not osp.isfile(img_path):
        raise FileNotFoundError(f'--img {img_path!r} is not a file')
    steps = [
        t for t in find_pipeline(cfg)
        if 'LoadAnnotations' not in str(t.get('type', ''))
    ]
    if not any('LoadImage' in str(t.get('type', '')) for t in steps):
        # array datasets (CIFAR) have no loading step: read the file
        steps.insert(0, dict(type='LoadImageFromFile'))
    data = Compose(steps)(dict(img_path=img_path, img_id=0))
    return model.data_preprocessor(pseudo_collate([data]), False)


def record_features(model: torch.nn.Module, batch: dict) -> Tuple[dict, dict]:
    """Recorded student and teacher features of one batch (no grad).

    The student runs in ``tensor`` mode with its recorder; the teacher through
    :meth:`FeatureDistiller.teacher_features`, exactly as in training.
    """
    inputs, samples = batch['inputs'], batch['data_samples']
    with torch.no_grad():
        with model.student_recorder.record() as s_out:
            model.student(inputs, samples, mode='tensor')
        t_out = model.teacher_features(
            inputs, samples, stop_after=s_out['__calls__'])
    return s_out, t_out


def read_rgb(path: str) -> np.ndarray:
    """The image as an RGB array for the header."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))
