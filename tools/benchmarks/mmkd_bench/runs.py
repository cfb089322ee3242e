"""One training or evaluation job of a benchmark, and whether it finished.

A run is a dumped config (the exact file that trains), a work directory
and the tool that runs it (``tools/train.py`` or ``tools/test.py``). A run
that finished leaves ``finished.json`` in its work directory with the
digest of its config (and checkpoint); a later call skips it as long as
the digest matches, so a benchmark resumes where it stopped and reruns
what changed.
"""
import glob
import hashlib
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

MARKER = 'finished.json'
# keys of the training log records (the evaluation records have none)
_TRAIN_KEYS = ('lr', 'base_lr', 'momentum', 'grad_norm')


@dataclass
class Run:
    """A job of a benchmark.

    Attributes:
        name (str): Unique, path-like (``baselines/<config>``,
            ``digits/cwt/seed3``); also the job name on Slurm.
        kind (str): ``'train'`` (``tools/train.py``) or ``'test'``
            (``tools/test.py`` on ``checkpoint``).
        config (str): The dumped config file.
        work_dir (str): Its work directory.
        checkpoint (str, optional): What a test run evaluates.
        after (list[str]): Names of runs that must finish first (a
            distilled student needs its trained teacher).
        config_digest (str): sha1 of the config text and the checkpoint
            path, taken when the run is planned (the Runner later dumps
            its own version of the config into the work directory, under
            the same name when the config lies there).
    """

    name: str
    kind: str
    config: str
    work_dir: str
    checkpoint: Optional[str] = None
    after: List[str] = field(default_factory=list)
    config_digest: str = ''

    def __post_init__(self) -> None:
        if not self.config_digest:
            h = hashlib.sha1()
            with open(self.config, 'rb') as f:
                h.update(f.read())
            h.update(str(self.checkpoint).encode())
            self.config_digest = h.hexdigest()[:16]

    def digest(self) -> str:
        """The digest that marks this run finished."""
        return self.config_digest

    @property
    def marker(self) -> str:
        """Path of the ``finished.json`` marker."""
        return osp.join(self.work_dir, MARKER)

    def finished(self) -> bool:
        """Whether this very run (same digest) finished before."""
        if not osp.isfile(self.marker):
            return False
        with open(self.marker) as f:
            return json.load(f).get('digest') == self.digest()

    def mark_finished(self, seconds: Optional[float] = None) -> None:
        """Write the marker (local launches; Slurm jobs write it in their
        script)."""
        with open(self.marker, 'w') as f:
            json.dump(dict(digest=self.digest(), seconds=seconds), f)

    def seconds(self) -> Optional[float]:
        """Wall time recorded by a local launch (None if unknown)."""
        if not osp.isfile(self.marker):
            return None
        with open(self.marker) as f:
            return json.load(f).get('seconds')

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


_DECODER = json.JSONDecoder()


def _records(path: str) -> List[dict]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('{'):
                # the first object of the line: a host test.py run with
                # several processes can leave another rank's tail after it
                try:
                    out.append(_DECODER.raw_decode(line)[0])
                except json.JSONDecodeError:
                    continue
    return out


def _is_eval(record: dict) -> bool:
    return not any(
        k in _TRAIN_KEYS or k.startswith('loss') or 'loss' in k.split('/')[-1]
        for k in record)


def read_metrics(work_dir: str) -> Dict[str, float]:
    """The last evaluation the host evaluator wrote in ``work_dir``.

    MMEngine writes validation metrics to
    ``<timestamp>/vis_data/scalars.json`` and test metrics to
    ``<timestamp>/<timestamp>.json``; whatever keys the evaluator used
    (``coco/bbox_mAP``, ``coco/segm_mAP``, ``mIoU``, ``accuracy/top1``)
    are returned, from the latest timestamp that has any.

    Returns:
        dict: ``metric -> value`` without the bookkeeping keys (``step``,
        ``time``, ``data_time``); empty when there is none.
    """
    stamps = sorted(
        d for d in glob.glob(osp.join(work_dir, '*')) if osp.isdir(d))
    for stamp in reversed(stamps):
        name = osp.basename(stamp)
        files = [
            osp.join(stamp, 'vis_data', 'scalars.json'),
            osp.join(stamp, f'{name}.json')
        ]
        records = [
            r for path in files if osp.isfile(path) for r in _records(path)
            if _is_eval(r)
        ]
        if records:
            last = records[-1]
            return {
                k: float(v)
                for k, v in last.items()
                if isinstance(v, (int, float)) and k not in (
                    'step', 'epoch', 'iter', 'time', 'data_time', 'memory')
            }
    return {}


def final_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint MMEngine saved last (``last_checkpoint``), if any."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    ckpts = glob.glob(osp.join(work_dir, '*.pth'))
    return max(ckpts, key=os.path.getmtime) if ckpts else None


def order(runs: List[Run]) -> List[Run]:
    """``runs`` with every run after the runs it needs (stable)."""
    by_name = {r.name: r for r in runs}
    done: Dict[str, bool] = {}
    out: List[Run] = []

    def visit(run: Run, path=()) -> None:
        if done.get(run.name):
            return
        if run.name in path:
            raise ValueError(f'runs depend on each other in a cycle: '
                             f"{' -> '.join(path + (run.name, ))}")
        for dep in run.after:
            if dep not in by_name:
                raise KeyError(f'{run.name} needs {dep!r}, which is not '
                               'planned')
            visit(by_name[dep], path + (run.name, ))
        done[run.name] = True
        out.append(run)

    for run in runs:
        visit(run)
    return out
