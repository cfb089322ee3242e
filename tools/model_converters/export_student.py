"""Export the student of a FeatureDistiller checkpoint for its host toolbox.

Usage::

    python tools/model_converters/export_student.py CKPT OUT [--config CFG]

Writes ``OUT`` (a checkpoint of the student alone: keys as the host model
expects them, ``student.`` stripped, connectors and teacher dropped) and,
next to it, ``OUT`` with a ``.py`` suffix: the student's own config (the
distillation config with ``model`` replaced by the student). The config
holds only the host's own types and hooks: this project's hooks are dropped,
and ``custom_imports`` keeps ``mmkd_channel`` only when the student is built
from one of its types (the ``mmkd_channel.MobileNetV1`` backbone), so a
detector or segmentor loads where mmkd_channel is not installed. Both load
with the host's APIs, e.g.::

    from mmdet.apis import init_detector, inference_detector
    model = init_detector('student.py', 'student.pth')

``meta`` keeps the training run's ``dataset_meta`` (class names, palette),
the student config text (``meta['cfg']``), epoch and iteration, and where the
student came from.

The distillation config comes from ``--config``, else from the config the
training run dumped into its work dir next to the checkpoint; config text
stored inside the checkpoint is never executed. The checkpoint is read for
its tensors only (:func:`mmkd_channel.utils.restricted_torch_load`).
"""
import argparse
import copy
import glob
import os.path as osp
import re
import sys
from typing import Callable, Optional, Tuple

from mmengine.config import Config
from mmengine.utils import ProgressBar

import mmkd_channel
from mmkd_channel.utils import atomic_torch_save, restricted_torch_load
from mmkd_channel.utils.checkpoint import (drop_config_text,
                                           extract_state_dict, strip_inert)
from mmkd_channel.utils.mim import resolve_config_path

#: custom hooks that need a FeatureDistiller; the student config drops them
DISTILLER_HOOKS = ('TeacherEvalHook', 'DistillStopHook', 'DistillNaNHook')
#: settings of the distillation run that must not leak into the student's
RUN_KEYS = ('load_from', 'resume', 'launcher', 'model_wrapper_cfg', 'distill')
#: the package (and scope) whose types the exported config avoids
OWN = 'mmkd_channel'


def is_own(cfg: dict) -> bool:
    """Whether a config dict builds one of this project's types."""
    type_name = cfg.get('type')
    if cfg.get('_scope_') == OWN:
        return True
    return isinstance(type_name, str) and type_name.startswith(OWN + '.')


def own_types(obj) -> list:
    """Every type of this project nested in ``obj`` (dicts and lists)."""
    found = []
    if isinstance(obj, dict):
        if is_own(obj):
            found.append(obj.get('type'))
        for value in obj.values():
            found += own_types(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            found += own_types(value)
    return found


def make_host_pure(cfg: Config) -> Config:
    """Drop what needs mmkd_channel from a student config, in place.

    Hooks of this project (``EpochSeedHook``, the distiller hooks) are
    removed, and ``custom_imports`` keeps ``mmkd_channel`` only when the
    student itself is built from one of its types (e.g. the
    ``mmkd_channel.MobileNetV1`` backbone): then exactly that one import.
    Other imports of the user's are kept.

    Returns:
        Config: ``cfg``.
    """
    if 'custom_hooks' in cfg:
        hooks = [
            h for h in (cfg.custom_hooks or [])
            if not (isinstance(h, dict) and is_own(h))
        ]
        if hooks:
            cfg.custom_hooks = hooks
        else:
            cfg.pop('custom_hooks')
    imports = cfg.get('custom_imports') or {}
    modules = imports.get('imports', [])
    modules = [modules] if isinstance(modules, str) else list(modules)
    keep = [m for m in modules if m != OWN and not m.startswith(OWN + '.')]
    if own_types(cfg._cfg_dict.to_dict()):
        keep.append(OWN)
    if keep:
        cfg.custom_imports = dict(imports=keep, allow_failed_imports=False)
    else:
        cfg.pop('custom_imports', None)
    return cfg


def student_config(cfg: Config) -> Config:
    """The host config of the student of a distillation config.

    Args:
        cfg (Config): A config whose ``model`` is a FeatureDistiller.

    Returns:
        Config: ``cfg`` with ``model`` replaced by the student model (a
        student given as a config path is read from that file), without
        the distillation-only hooks and run settings, holding only the
        host's own types (see :func:`make_host_pure`).
    """
    model = cfg.get('model')
    if model is None or not str(model.get('type',
                                          '')).endswith('FeatureDistiller'):
        raise ValueError(
            'the config does not describe a FeatureDistiller (model.type='
            f'{None if model is None else model.get("type")!r}); give the '
            'distillation config with --config')
    student = model['student']
    if isinstance(student, str):
        host = Config.fromfile(resolve_config_path(student))
        student = copy.deepcopy(host.model)
        if host.get('default_scope') and '_scope_' not in student:
            student['_scope_'] = host.default_scope
    else:
        student = copy.deepcopy(student)
    if model.get('data_preprocessor') is not None:
        student['data_preprocessor'] = copy.deepcopy(
            model['data_preprocessor'])
    out = copy.deepcopy(cfg)
    out.model = student
    for key in RUN_KEYS:
        out.pop(key, None)
    hooks = [
        h for h in (out.get('custom_hooks') or [])
        if not any(n in str(h.get('type', '')) for n in DISTILLER_HOOKS)
    ]
    if 'custom_hooks' in out:
        out.custom_hooks = hooks
    return make_host_pure(out)


def split_state_dict(state_dict: dict) -> Tuple[dict, list]:
    """(student weights with ``student.`` stripped, dropped keys)."""
    student, dropped = {}, []
    for key, value in state_dict.items():
        if key.startswith('student.'):
            student[key[len('student.'):]] = value
        else:
            dropped.append(key)
    if not student:
        raise ValueError(
            'the checkpoint has no `student.*` weights: it is not a '
            f'FeatureDistiller checkpoint (first keys: {list(state_dict)[:5]})'
        )
    return student, dropped


def dumped_config(checkpoint: str, meta: dict) -> str:
    """The config the training run dumped next to ``checkpoint``.

    MMEngine writes it into the work dir as ``<config name>.py`` (or
    ``<timestamp>.py``); ``meta['experiment_name']`` (``<config
    name>_<timestamp>``) tells which one when there are several.

    Raises:
        FileNotFoundError: if there is none (or several and none fits),
            naming ``--config`` and the file it looked for.
    """
    work_dir = osp.dirname(osp.abspath(checkpoint))
    found = sorted(glob.glob(osp.join(work_dir, '*.py')))
    name = meta.get('experiment_name')
    if isinstance(name, str):
        stem = osp.basename(name)
        match = re.fullmatch(r'(.*)_(\d{8}_\d{6})', stem)
        wanted = [match.group(1), match.group(2)] if match else [stem]
        for want in wanted:
            path = osp.join(work_dir, f'{want}.py')
            if path in found:
                return path
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f'no config for {checkpoint!r}: give the distillation config with '
        f'--config, or keep the config the training run dumped into its '
        f'work dir next to the checkpoint ({work_dir}/<config name>.py; '
        f'found {len(found)} .py files there). Config text stored inside '
        'the checkpoint is not used: it is code and would run.')


#: steps of :func:`export_student` reported to its ``progress`` callback
EXPORT_STEPS = ('read the checkpoint', 'build the student config',
                'write the student checkpoint', 'write the student config')


def export_student(checkpoint: str,
                   out: str,
                   config: Optional[str] = None,
                   out_config: Optional[str] = None,
                   progress: Optional[Callable[[str], None]] = None) -> dict:
    """Write the student of ``checkpoint`` to ``out`` (and its config).

    Args:
        checkpoint (str): A FeatureDistiller checkpoint (training run).
        out (str): Output checkpoint path.
        config (str, optional): The distillation config; defaults to the
            config dumped into the checkpoint's work dir
            (:func:`dumped_config`).
        out_config (str, optional): Where to write the student config;
            defaults to ``out`` with a ``.py`` suffix. ``''`` skips it.
        progress (callable, optional): Called with each step of
            :data:`EXPORT_STEPS` once it is done.

    Returns:
        dict: What was written (``state_dict`` and ``meta``), plus
        ``dropped`` (the keys left out) and ``config_path``.
    """
    done = progress or (lambda step: None)
    ckpt = restricted_torch_load(checkpoint, map_location='cpu')
    drop_config_text(ckpt)  # source code: never executed
    done(EXPORT_STEPS[0])
    student_sd, dropped = split_state_dict(extract_state_dict(ckpt))
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    meta = dict(meta) if isinstance(meta, dict) else {}
    cfg = Config.fromfile(config or dumped_config(checkpoint, meta))
    distill_model = cfg.model
    host_cfg = student_config(cfg)
    done(EXPORT_STEPS[1])
    out_meta = {
        k: strip_inert(meta[k])
        for k in ('dataset_meta', 'epoch', 'iter', 'seed', 'experiment_name',
                  'mmengine_version') if k in meta
    }
    teacher = distill_model.get('teacher')
    out_meta.update(
        cfg=host_cfg.pretty_text,
        mmkd_channel_version=mmkd_channel.__version__,
        distilled=dict(
            source=osp.abspath(checkpoint),
            teacher=teacher if isinstance(teacher, str) else
            (teacher or {}).get('type'),
            teacher_ckpt=distill_model.get('teacher_ckpt')))
    result = dict(meta=out_meta, state_dict=student_sd)
    atomic_torch_save(result, out)
    done(EXPORT_STEPS[2])
    if out_config is None:
        out_config = osp.splitext(out)[0] + '.py'
    if out_config:
        host_cfg.dump(out_config)
    done(EXPORT_STEPS[3])
    return dict(result, dropped=dropped, config_path=out_config or None)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export the student of a distillation checkpoint')
    parser.add_argument('checkpoint', help='FeatureDistiller checkpoint')
    parser.add_argument('out', help='output checkpoint of the student')
    parser.add_argument(
        '--config',
        help='the distillation config (default: the one the training run '
        'dumped into its work dir, next to the checkpoint)')
    parser.add_argument(
        '--out-config',
        help='where to write the student config (default: OUT as .py; '
        "'' to skip)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    bar = ProgressBar(len(EXPORT_STEPS))
    result = export_student(
        args.checkpoint,
        args.out,
        args.config,
        args.out_config,
        progress=lambda step: bar.update())
    sys.stdout.write('\n')
    print(f'student: {len(result["state_dict"])} tensors -> {args.out}; '
          f'dropped {len(result["dropped"])} distillation keys; config -> '
          f'{result["config_path"]}')


if __name__ == '__main__':
    main()
