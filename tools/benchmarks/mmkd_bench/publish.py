"""Publish a benchmark's distilled students: student-only checkpoints named
with their sha256 and the measured results in the metafiles.

As mmdet's ``gather_models.py``: ``<name>_<sha256[:8]>.pth`` (written by
``tools/model_converters/export_student.py``, so it loads with the host's
own APIs) beside its ``.py`` config, and per model in its metafile a
``Weights`` entry and a ``Results`` entry with the measured metric, marked
by its ``Comment`` (a later publish replaces it; the published numbers
stay). The ``Comment`` also gives the teachers' measured metric, named as
the metafile names them: ``teacher 76.55`` for ``Metadata.Teacher``,
``teachers cnn 76.55, vit 80.69`` for the entries of ``Metadata.Teachers``
(which must be the config's teacher names). The metafile is rewritten by
PyYAML: comments other than its leading block are not kept.
"""
import hashlib
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Union

import yaml

from .runs import final_checkpoint

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
MEASURED = 'Measured by tools/benchmarks/benchmark_train.py'


def sha256(path: str) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def export(run_dir: str, config: str, out_dir: str, name: str) -> str:
    """Export the student of the run's last checkpoint as
    ``<out_dir>/<name>_<sha256[:8]>.pth`` (and its ``.py``)."""
    ckpt = final_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f'{run_dir}: no checkpoint to publish')
    os.makedirs(out_dir, exist_ok=True)
    tmp = osp.join(out_dir, f'{name}.pth')
    subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'model_converters', 'export_student.py'), ckpt,
        tmp, '--config', config
    ],
                   check=True,
                   cwd=REPO,
                   capture_output=True,
                   text=True)
    final = osp.join(out_dir, f'{name}_{sha256(tmp)[:8]}.pth')
    os.replace(tmp, final)
    if osp.isfile(osp.join(out_dir, f'{name}.py')):
        os.replace(
            osp.join(out_dir, f'{name}.py'),
            osp.splitext(final)[0] + '.py')
    return final


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith('#'):
            break
        lines.append(line)
    return '\n'.join(lines) + '\n' if lines else ''


def teacher_note(teacher: Union[None, float, dict]) -> str:
    """The teachers' measured metric as the ``Comment`` states it."""
    if isinstance(teacher, dict):
        done = [f'{n} {v:.2f}' for n, v in teacher.items() if v is not None]
        return f"teachers {', '.join(done)}" if done else ''
    return '' if teacher is None else f'teacher {teacher:.2f}'


def update_metafile(metafile: str,
                    name: str,
                    weights: str,
                    results: Dict[str, float],
                    task: str,
                    dataset: str,
                    note: str,
                    teacher: Union[None, float, dict] = None) -> None:
    """Set ``Weights`` and the measured ``Results`` entry of model
    ``name`` in ``metafile``.

    Args:
        teacher (float | dict, optional): The teacher's measured metric,
            or ``teacher name -> metric`` with several teachers (the names
            of the model's ``Metadata.Teachers``).

    Raises:
        KeyError: no model ``name``; a teacher name that
            ``Metadata.Teachers`` does not list.
    """
    with open(metafile) as f:
        text = f.read()
    data = yaml.safe_load(text)
    model = next((m for m in data.get('Models') or [] if m['Name'] == name),
                 None)
    if model is None:
        raise KeyError(f'{metafile}: no model named {name!r}')
    if isinstance(teacher, dict):
        listed = list((model.get('Metadata') or {}).get('Teachers') or {})
        unknown = [n for n in teacher if n not in listed]
        if unknown:
            raise KeyError(
                f'{metafile}: model {name!r} has teachers {unknown} that its '
                f'Metadata.Teachers does not list (it lists {listed}); name '
                "the metafile's entries as the config's teachers=dict().")
    model['Weights'] = weights
    measured = teacher_note(teacher)
    kept = [
        r for r in model.get('Results') or []
        if not str(r.get('Comment', '')).startswith(MEASURED)
    ]
    metric_names = ', '.join(results)
    kept.append(
        dict(
            Task=task,
            Dataset=dataset,
            Metrics={
                k: round(v, 2)
                for k, v in results.items()
            },
            Comment=f'{MEASURED} ({note})' +
            (f'; {measured} {metric_names}.' if measured else '.')))
    model['Results'] = kept
    with open(metafile, 'w') as f:
        f.write(_leading_comments(text))
        yaml.safe_dump(
            data, f, sort_keys=False, allow_unicode=True, width=1000)


def publish(rows: List[dict], pairs: dict, entries: List[dict], work_dir: str,
            repo: str, base_url: Optional[str], note: str) -> List[dict]:
    """Export every distilled student that has a result; fill metafiles.

    Args:
        rows (list[dict]): :func:`.summary.gather` rows.
        pairs (dict): ``name -> Pair``.
        entries (list[dict]): The plan's pair entries.
        work_dir (str): The benchmark's work directory.
        repo (str): Root of ``model-index.yml`` and the metafiles.
        base_url (str, optional): Where the checkpoints will be served;
            ``Weights`` is ``<base_url>/<file>`` (else the local path).
        note (str): What the ``Comment`` adds (GPUs, date).

    Returns:
        list[dict]: ``name``, ``checkpoint``, ``metafile`` per published
        model.
    """
    out = []
    by_name = {e['name']: e for e in entries}
    for row in rows:
        pair = pairs.get(row['name'])
        if pair is None or row['distilled'] is None:
            continue
        entry = by_name[row['name']]
        run_dir = osp.join(work_dir, entry['distilled'])
        config = osp.join(run_dir, 'config.py')
        if not osp.isfile(config):
            config = osp.join(REPO, entry['config'])
        ckpt = export(run_dir, config, osp.join(work_dir, 'publish'),
                      pair.name)
        weights = (f"{base_url.rstrip('/')}/{osp.basename(ckpt)}"
                   if base_url else ckpt)
        metafile = osp.join(repo, pair.metafile)
        update_metafile(metafile, pair.name, weights,
                        {pair.metric: row['distilled']}, pair.task,
                        pair.dataset, note, row['teacher'])
        out.append(dict(name=pair.name, checkpoint=ckpt, metafile=metafile))
    return out
