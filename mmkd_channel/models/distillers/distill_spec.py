"""The ``distill`` argument of the distiller, checked and completed."""
import difflib
from typing import Sequence

from .teachers import resolve_teacher_model


def normalise_distill(distill, teachers: Sequence[str]) -> dict:
    """``distill`` (a dict or a list of specs with ``name``) as
    ``name -> spec`` with every field present; clear errors for a spec
    that is not one."""
    if not distill:
        raise ValueError(
            'FeatureDistiller: `distill` is empty, so nothing would be '
            "distilled. Give e.g. distill=dict(fpn=dict(student='neck', "
            "connector=..., loss=dict(type='FeatureL2Loss'))) or inherit "
            'a preset from configs/_base_/distill/.')
    if isinstance(distill, (list, tuple)):
        items = []
        for i, spec in enumerate(distill):
            if not isinstance(spec, dict):
                raise TypeError(
                    f'distill[{i}] must be a dict with `student` and '
                    f"`loss` (and `name`), got {spec!r}. E.g. "
                    "dict(name='fpn', student='neck', loss=dict("
                    "type='FeatureL2Loss'))")
            spec = dict(spec)
            items.append((spec.pop('name', f'{i}'), spec))
    elif isinstance(distill, dict):
        items = list(distill.items())
    else:
        raise TypeError('FeatureDistiller: `distill` must be a dict '
                        f'name -> spec, got {type(distill).__name__}')
    allowed = {
        'student', 'teacher', 'connector', 'teacher_connector', 'loss',
        'teacher_model'
    }
    specs = {}
    for name, spec in items:
        if not isinstance(spec, dict):
            raise TypeError(f"distill['{name}'] must be a dict, got "
                            f'{spec!r}')
        unknown = set(spec) - allowed
        if unknown:
            close = {
                k: difflib.get_close_matches(str(k), allowed, 1)
                for k in sorted(unknown, key=str)
            }
            hint = ''.join(f' {k!r} -> {v[0]!r}?' for k, v in close.items()
                           if v)
            raise KeyError(f"distill['{name}']: unknown keys "
                           f'{sorted(unknown, key=str)};{hint} allowed: '
                           f'{sorted(allowed)}')
        for key in ('student', 'teacher'):
            path = spec.get(key)
            if path is not None and not isinstance(path, str):
                raise TypeError(
                    f"distill['{name}'].{key} must be a dotted module "
                    f"path such as 'neck' or 'backbone.stage(-1)', got "
                    f'{path!r} ({type(path).__name__})')
        if 'student' not in spec:
            raise KeyError(f"distill['{name}'] needs `student`, the "
                           "dotted path of a student module, e.g. 'neck'")
        if spec.get('loss') is None:
            raise KeyError(f"distill['{name}'] needs `loss`, e.g. "
                           "dict(type='FeatureL2Loss', loss_weight=1.0)")
        spec = dict(spec)
        spec.setdefault('teacher', spec['student'])
        spec.setdefault('connector', None)
        spec.setdefault('teacher_connector', None)
        spec['teacher_model'] = resolve_teacher_model(name, spec,
                                                      list(teachers))
        specs[str(name)] = spec
    return specs
