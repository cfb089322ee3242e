"""Several teachers: the ``teachers=`` argument of the FeatureDistiller.

``teacher=`` / ``teacher_ckpt=`` is the one-teacher form; it is the same as
``teachers=dict(teacher=dict(config=teacher, ckpt=teacher_ckpt))``. Each
distill term names its teacher with ``teacher_model=`` (may be left out
when there is one teacher).
"""
from typing import Dict, List, Optional

#: The name of the teacher given with ``teacher=``.
SINGLE = 'teacher'
#: Keys of one entry of ``teachers``.
TEACHER_KEYS = ('config', 'ckpt')


def normalise_teachers(teacher, teacher_ckpt: Optional[str],
                       teachers: Optional[dict]) -> Dict[str, dict]:
    """``name -> dict(config=..., ckpt=...)`` from either form.

    Raises:
        TypeError: neither form given.
        ValueError: both forms given, or an empty ``teachers``.
        KeyError: an entry without ``config`` or with unknown keys.
        TypeError: an entry that is not a dict, a name that is not a
            string.
    """
    if teachers is None:
        if teacher is None:
            raise TypeError(
                'FeatureDistiller: teacher must be a config path or a model '
                'dict (with teacher_ckpt=...), got None; or give several '
                "teachers as teachers=dict(name=dict(config=..., ckpt=...)).")
        return {SINGLE: dict(config=teacher, ckpt=teacher_ckpt)}
    if teacher is not None or teacher_ckpt is not None:
        raise ValueError(
            'FeatureDistiller: give either `teacher` (and `teacher_ckpt`) '
            'or `teachers`, not both; with `teachers` each entry has its '
            "own checkpoint: teachers=dict(name=dict(config=..., "
            'ckpt=...)).')
    if not isinstance(teachers, dict) or not teachers:
        raise ValueError(
            'FeatureDistiller: `teachers` must be a non-empty dict name -> '
            f'dict(config=..., ckpt=...), got {teachers!r}')
    out = {}
    for name, entry in teachers.items():
        where = f'teachers[{name!r}]'
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f'{where}: a teacher name must be an identifier '
                            "such as 'det' (it names log keys)")
        if not isinstance(entry, dict):
            raise TypeError(f'{where} must be dict(config=..., ckpt=...), '
                            f'got {entry!r}')
        unknown = sorted(set(entry) - set(TEACHER_KEYS))
        if unknown:
            raise KeyError(f'{where}: unknown keys {unknown}; allowed: '
                           f'{list(TEACHER_KEYS)}')
        if entry.get('config') is None:
            raise KeyError(f'{where} needs `config`: a host config path '
                           "('mmdet::...py') or a model dict")
        out[name] = dict(config=entry['config'], ckpt=entry.get('ckpt'))
    return out


def resolve_teacher_model(name: str, spec: dict, teachers: List[str]) -> str:
    """The teacher of distill term ``name`` (its ``teacher_model``).

    Raises:
        KeyError: naming the term and the teachers there are.
    """
    chosen = spec.get('teacher_model')
    if chosen is None:
        if len(teachers) == 1:
            return teachers[0]
        raise KeyError(f"distill['{name}'] needs teacher_model, the teacher "
                       f'it learns from: one of {teachers}')
    if chosen not in teachers:
        raise KeyError(f"distill['{name}']: teacher_model={chosen!r} is not "
                       f'a teacher; the teachers are {teachers}')
    return chosen


def check_all_used(teachers: List[str], used: List[str]) -> None:
    """Every teacher is the ``teacher_model`` of some term.

    Raises:
        ValueError: naming the unused teachers (they would cost memory and
            time for nothing).
    """
    for name in teachers:
        if name not in used:
            raise ValueError(
                f'teachers[{name!r}] is used by no distill term; remove it '
                f"or set teacher_model='{name}' in a term of `distill`.")
