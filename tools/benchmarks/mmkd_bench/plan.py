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
  ``teacher_ckpt`` (shared by the configs of one teacher). A config with
  several teachers (``teachers=dict(cnn=dict(config=..., ckpt=...),
  ...)``) gets one such run per teacher, each shared as well.
* **distilled**: ``tools/train.py`` of the config itself.

Full-scale runs use the config files as they are; ``--tiny`` dumps shrunk
copies (see :mod:`.tiny`) with a random-weight teacher checkpoint.
"""
import copy
import hashlib
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config

from mmkd_channel.models.distillers.teachers import SINGLE
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


def teachers_of(cfg: Config) -> Dict[str, tuple]:
    """``name -> (run name, config, checkpoint, source)`` of a config's
    teachers (``source``: the config path or model dict the distiller
    config gives).

    The one teacher of ``teacher=`` / ``teacher_ckpt=`` is named as the
    distiller names it (``'teacher'``); with ``teachers=dict(...)`` each
    keeps its name. A teacher given as a config path is named after its
    file (so configs that share it share its run); one given as a model
    dict after the distillation config (and its name, with several).
    """
    several = cfg.model.get('teachers')
    if several:
        specs = {
            name: (t.get('config'), t.get('ckpt'))
            for name, t in several.items()
        }
    else:
        specs = {
            SINGLE: (cfg.model.get('teacher'), cfg.model.get('teacher_ckpt'))
        }
    out = {}
    for name, (config, ckpt) in specs.items():
        if isinstance(config, str):
            tcfg = load_config(config)
            run_name = _stem(config)
        else:
            tcfg = copy.deepcopy(cfg)
            tcfg.model = copy.deepcopy(config)
            run_name = f'{_stem(cfg.filename)}_teacher' + (f'_{name}'
                                                           if several else '')
        out[name] = (run_name, tcfg, ckpt, config)
    return out


def _plan_teacher(name: str, tcfg: Config, ckpt: Optional[str], source,
                  work_dir: str, tiny, runs: dict) -> tuple:
    """Add the evaluation run of one teacher to ``runs`` (once).

    Returns:
        tuple: ``(run name or None, config file, checkpoint)``; the run is
        None when the teacher has no checkpoint to evaluate.
    """
    from .tiny import random_checkpoint, shrink
    t_run = f'teachers/{name}'
    if (tiny is None and ckpt and t_run in runs
            and runs[t_run].checkpoint != ckpt):
        # the same config with other weights (two fine-tuned ResNet-50
        # teachers): a run of its own, not the first one's result
        t_run += '_' + hashlib.sha1(ckpt.encode()).hexdigest()[:8]
    t_dir = osp.join(work_dir, t_run)
    if tiny is not None:
        shrink(tcfg, tiny, t_dir)
        t_file = _dump(tcfg, t_dir)
        ckpt = osp.join(t_dir, 'random_init.pth')
        if not osp.isfile(ckpt):
            random_checkpoint(tcfg, ckpt)
    else:
        t_file = (
            _resolve(source) if isinstance(source, str) else _dump(
                tcfg, t_dir))
    if not ckpt:
        return None, t_file, ckpt
    runs.setdefault(t_run, Run(t_run, 'test', t_file, t_dir, ckpt))
    return t_run, t_file, ckpt


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
        and ``distilled`` and how the baseline was found. With several
        teachers ``teacher`` is a dict ``teacher name -> run name`` (None
        for a teacher without a checkpoint).
    """
    from .tiny import shrink
    runs: dict = {}
    entries = []
    for pair in pairs:
        config_file = osp.join(REPO, pair.config)
        cfg = Config.fromfile(config_file)
        if 'student' not in cfg.model:
            continue  # a plain model listed beside the pairs
        entry = dict(name=pair.name, config=pair.config)
        # teachers: one evaluation each
        several = bool(cfg.model.get('teachers'))
        teacher_runs, teacher_args = {}, {}
        for t_key, teacher in teachers_of(cfg).items():
            t_run, t_file, t_ckpt = _plan_teacher(*teacher, work_dir, tiny,
                                                  runs)
            teacher_runs[t_key] = t_run
            teacher_args[t_key] = (t_file, t_ckpt)
        if several:
            entry['teacher'] = teacher_runs
        elif teacher_runs[SINGLE]:
            entry['teacher'] = teacher_runs[SINGLE]
        # baseline
        b_name, b_file = baseline_of(config_file, cfg)
        b_run = f'baselines/{b_name}'
        b_dir = osp.join(work_dir, b_run)
        base = (base_configs(config_file) or [''])[0]
        entry['baseline_from'] = (
            (osp.relpath(base, REPO) if base.startswith(REPO) else base)
            if b_file else 'the config with model = model.student')
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
            if several:
                for t_key, (t_file, t_ckpt) in teacher_args.items():
                    cfg.model.teachers[t_key] = dict(
                        config=t_file, ckpt=t_ckpt)
            else:
                cfg.model.teacher, cfg.model.teacher_ckpt = teacher_args[
                    SINGLE]
            d_file = _dump(cfg, d_dir)
        runs[d_run] = Run(d_run, 'train', d_file, d_dir)
        entry['distilled'] = d_run
        entries.append(entry)
    return list(runs.values()), entries
