"""Efficacy tasks as benchmark runs: teacher, plain and distilled students.

Every model is trained by ``tools/train.py`` from a config that is a
*shipped* config plus overrides for the task's data (the same overrides
for the plain and the distilled students), so the numbers measure what
users run. Each run's config is dumped into its work directory
(``<out_dir>/<task>/<model>/seed<k>/config.py``) and can be re-run as it
is.

The teacher of a task is trained once (seed 0) and shared by every seed
and method, as a model-zoo teacher would be; the students are trained once
per seed with identical schedules. Runs go through the same launchers as
the model-index benchmark (:mod:`.launch`): locally, one or more at a
time, or as Slurm jobs; a finished run is skipped by a later call with the
same config.
"""
import hashlib
import math
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from .common import get_logger
from .launch import LaunchOptions, run_local, write_slurm
from .runs import Run, read_metrics
from .task_base import PLAIN, TEACHER, RunResult, RunSpec, Task
from .tasks import TASKS


def _dump(cfg: Config) -> str:
    os.makedirs(cfg.work_dir, exist_ok=True)
    path = osp.join(cfg.work_dir, 'config.py')
    cfg.dump(path)
    return path


def _run_name(spec: RunSpec) -> str:
    return f'{spec.task}/{spec.model}/seed{spec.seed}'


def plan_task(task: Task, variants: Sequence[str],
              seeds: Sequence[int]) -> Tuple[List[Run], List[RunSpec]]:
    """Dump the configs of a task's runs; return them as runs and specs.

    Variants without a config for this task are left out (see
    :func:`skipped_variants`).
    """
    task.prepare()
    todo = [v for v in variants if task.shipped_config(v) is not None]
    teacher_cfg = task.build_teacher_cfg()
    teacher_file = _dump(teacher_cfg)
    teacher_ckpt = osp.join(teacher_cfg.work_dir,
                            f'epoch_{teacher_cfg.train_cfg.max_epochs}.pth')
    with open(teacher_file, 'rb') as f:
        teacher_digest = hashlib.sha1(f.read()).hexdigest()[:12]
    specs = [RunSpec(task.name, TEACHER, 0, teacher_file)]
    for seed in seeds:
        specs.append(
            RunSpec(task.name, PLAIN, seed, _dump(task.build_plain_cfg(seed))))
        for variant in todo:
            cfg = task.build_distill_cfg(variant, seed, teacher_file,
                                         teacher_ckpt)
            # a retrained teacher invalidates the finished students
            cfg.benchmark_teacher = teacher_digest
            specs.append(RunSpec(task.name, variant, seed, _dump(cfg)))
    teacher_run = _run_name(specs[0])
    runs = [
        Run(_run_name(s),
            'train',
            s.config_file,
            osp.dirname(s.config_file),
            after=[] if s.model in (TEACHER, PLAIN) else [teacher_run])
        for s in specs
    ]
    return runs, specs


def skipped_variants(task: Task, variants: Sequence[str]) -> Dict[str, str]:
    """``variant -> why it does not run`` for this task."""
    return {
        v: task.not_applicable.get(v, 'no model-index config')
        for v in variants if task.shipped_config(v) is None
    }


def collect(task: Task, runs: List[Run],
            specs: List[RunSpec]) -> List[RunResult]:
    """The task metric of every finished run (NaN when missing)."""
    out = []
    for run, spec in zip(runs, specs):
        metrics = read_metrics(run.work_dir) if run.finished() else {}
        value = metrics.get(task.metric, math.nan) * task.scale
        out.append(
            RunResult(spec.task, spec.model, spec.seed, value,
                      run.seconds() or math.nan))
    return out


def run_efficacy(tasks: Sequence[str],
                 methods: Sequence[str],
                 seeds: Sequence[int],
                 out_dir: str,
                 quick: bool = False,
                 jobs: int = 1,
                 settings: Optional[Dict[str, dict]] = None,
                 launch: Optional[LaunchOptions] = None,
                 execute: bool = True) -> Dict[str, dict]:
    """Train teacher, plain and distilled students; collect the metrics.

    Args:
        tasks (Sequence[str]): Task names (keys of :data:`.tasks.TASKS`).
        methods (Sequence[str]): Methods or variants
            (:data:`.task_base.VARIANTS`); the ones that do not apply to a
            task are listed in its report as such.
        seeds (Sequence[int]): Student seeds.
        out_dir (str): Where data, work dirs and reports go.
        quick (bool): Tiny data and one epoch (smoke test).
        jobs (int): Runs trained at a time by the local launchers.
        settings (dict, optional): ``task -> {setting: value}`` overrides
            of the task defaults (``epochs``, ``lr``, ...).
        launch (LaunchOptions, optional): How runs start (default: one
            local process per run). With ``slurm`` the job scripts are
            written and nothing is trained here.
        execute (bool): Start the runs; False only collects the results
            of runs that finished before (``--summary``).

    Returns:
        dict: ``task -> dict(task=Task, runs=[RunResult], skipped={method:
        reason}, time=seconds, status={run: status}, submit=path)``.
    """
    logger = get_logger()
    launch = launch or LaunchOptions()
    report = {}
    for name in tasks:
        if name not in TASKS:
            raise KeyError(f'unknown task {name!r}; known: {list(TASKS)}')
        t0 = time.perf_counter()
        task = TASKS[name](
            out_dir, quick=quick, **((settings or {}).get(name, {})))
        skipped = skipped_variants(task, methods)
        runs, specs = plan_task(task, methods, seeds)
        logger.info(f'[{name}] teacher, plain student and '
                    f'{[m for m in methods if m not in skipped]} over seeds '
                    f'{list(seeds)}; not applicable: {skipped}')
        status, submit = {}, None
        if not execute:
            pass
        elif launch.launcher == 'slurm':
            submit = write_slurm(runs, launch, task.out_dir)
        else:
            status = run_local(runs, launch, logger, jobs=jobs)
        results = collect(task, runs, specs)
        for r in results:
            logger.info(f'[{r.task}] {r.model} seed {r.seed}: '
                        f'{task.metric_label} {r.value:.2f}')
        report[name] = dict(
            task=task,
            runs=results,
            skipped=skipped,
            time=time.perf_counter() - t0,
            status=status,
            submit=submit)
    return report


def parse_settings(items: Optional[Sequence[str]]) -> Dict[str, dict]:
    """``['digits.epochs=20', ...]`` -> ``{'digits': {'epochs': 20}}``.

    Values are Python literals where they parse as such, else strings.
    """
    import ast
    out: Dict[str, dict] = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        task, dot, name = key.partition('.')
        if not (sep and dot and task and name):
            raise ValueError(f'expected TASK.KEY=VALUE, got {item!r}')
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        out.setdefault(task, {})[name] = value
    return out
