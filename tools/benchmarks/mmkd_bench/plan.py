"""The runs that reproduce a model-index table: per distilled config its
teacher's evaluation, its student baseline and the distilled run.

* **baseline**: the host config the distillation config inherits (its
  first ``_base_``) when that config's model is the distiller's student, as
  in ``_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py', ...]``
  with ``student=_base_.model``; otherwise (a student edited in the config,
  e.g. a ResNet-18 made from a ResNet-50 CIFAR config) the distillation
  config with ``model`` replaced by the student, so data and schedule stay
  those of the distilled run. Configs sharing a baseline share its run.
* **teacher**: ``tools/test.py`` of the teacher's config with
  ``teacher_ckpt`` (shared by the configs of one teacher).
* **distilled**: ``tools/train.py`` of the config itself.

Full-scale runs use the config files as they are; ``--tiny`` dumps shrunk
copies (see :mod:`.tiny`) with a random-weight teacher checkpoint.
"""
import copy
import os
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.config import Config

from .common import load_config
from .config_edits import host_dict
from .model_index import Pair, base_configs
from .runs import Run

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def _resolve(path: str) -> str:
    import mmkd_channel  # noqa: F401  (mmkd_channel:: scope)
    from mmkd_channel.utils import resolve_config_path
    return resolve_config_path(path)


def baseline_of(config_file: str, cfg: Config) -> Tuple[str, Optional[str]]:
    """``(name, host config file)`` of a distillation config's baseline.

    The host config file is None when the baseline must be derived from
    the distillation config (its student differs from its first base's
    model).
    """
    bases = base_configs(config_file)
    if bases:
        base_file = _resolve(bases[0])
        base = Config.fromfile(base_file)
        if host_dict(base.model) == host_dict(cfg.model.student):
            return _stem(bases[0]), base_file
    return _stem(config_file) + '_student', None


def derived_baseline(cfg: Config) -> Config:
    """The distillation config with its student as the model."""
    base = copy.deepcopy(cfg)
    base.model = copy.deepcopy(cfg.model.student)
    return base


def teacher_of(cfg: Config) -> Tuple[str, Config, Optional[str]]:
    """``(name, config, checkpoint)`` of a distillation config's teacher."""
    teacher = cfg.model.teacher
    if isinstance(teacher, str):
        tcfg = load_config(teacher)
        name = _stem(teacher)
    else:
        tcfg = copy.deepcopy(cfg)
        tcfg.model = copy.deepcopy(teacher)
        name = f"{_stem(cfg.filename)}_teacher"
    return name, tcfg, cfg.model.get('teacher_ckpt')


def _dump(cfg: Config, work_dir: str) -> str:
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'config.py')
    cfg.dump(path)
    return path


def plan_pairs(pairs: List[Pair],
               work_dir: str,
               tiny=None) -> Tuple[List[Run], List[dict]]:
    """Runs for ``pairs`` under ``work_dir``.

    Args:
        pairs (list[Pair]): From :func:`.model_index.load_pairs`.
        work_dir (str): Root of the runs' work directories.
        tiny (TinyData, optional): Shrink every config to this tiny data.

    Returns:
        tuple: The runs (shared ones once) and per pair a dict with its
        ``name``, ``config``, the run names of ``teacher``, ``baseline``
        and ``distilled`` and how the baseline was found.
    """
    from .tiny import random_checkpoint, shrink
    runs: dict = {}
    entries = []
    for pair in pairs:
        config_file = osp.join(REPO, pair.config)
        cfg = Config.fromfile(config_file)
        if 'student' not in cfg.model:
            continue  # a plain model listed beside the pairs
        entry = dict(name=pair.name, config=pair.config)
        # teacher
        t_name, tcfg, t_ckpt = teacher_of(cfg)
        t_run = f'teachers/{t_name}'
        t_dir = osp.join(work_dir, t_run)
        if tiny is not None:
            shrink(tcfg, tiny, t_dir)
            t_file = _dump(tcfg, t_dir)
            t_ckpt = osp.join(t_dir, 'random_init.pth')
            if not osp.isfile(t_ckpt):
                random_checkpoint(tcfg, t_ckpt)
        else:
            t_file = (
                _resolve(cfg.model.teacher) if isinstance(
                    cfg.model.teacher, str) else _dump(tcfg, t_dir))
        if t_ckpt:
            runs.setdefault(t_run, Run(t_run, 'test', t_file, t_dir, t_ckpt))
            entry['teacher'] = t_run
        # baseline
        b_name, b_file = baseline_of(config_file, cfg)
        b_run = f'baselines/{b_name}'
        b_dir = osp.join(work_dir, b_run)
        entry['baseline_from'] = (
            osp.relpath(b_file, REPO) if b_file and b_file.startswith(REPO)
            else b_file or 'the config with model = model.student')
        if b_run not in runs:
            if tiny is not None or b_file is None:
                bcfg = (
                    Config.fromfile(b_file)
                    if b_file else derived_baseline(cfg))
                if tiny is not None:
                    shrink(bcfg, tiny, b_dir)
                b_file = _dump(bcfg, b_dir)
            runs[b_run] = Run(b_run, 'train', b_file, b_dir)
        entry['baseline'] = b_run
        # distilled
        d_run = f'distilled/{pair.name}'
        d_dir = osp.join(work_dir, d_run)
        d_file = config_file
        if tiny is not None:
            shrink(cfg, tiny, d_dir)
            cfg.model.teacher = t_file
            cfg.model.teacher_ckpt = t_ckpt
            d_file = _dump(cfg, d_dir)
        runs[d_run] = Run(d_run, 'train', d_file, d_dir)
        entry['distilled'] = d_run
        entries.append(entry)
    return list(runs.values()), entries
