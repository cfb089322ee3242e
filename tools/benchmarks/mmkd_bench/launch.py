"""Run a benchmark's jobs here (``none`` / ``pytorch``) or write them as
Slurm jobs (``slurm``), through the repository's own ``tools/train.py`` and
``tools/test.py``.

* ``none``: one process per run (``python tools/train.py CONFIG``);
* ``pytorch``: ``torchrun --nproc_per_node GPUS`` per run, the command
  ``tools/dist_train.sh`` runs (on a machine without CUDA the processes use
  gloo on CPU, see ``mmkd_channel.utils.dist``);
* ``slurm``: one ``job.sh`` per run (``#SBATCH`` header, ``srun python
  tools/train.py CONFIG --launcher=slurm``) and ``submit.sh``, which
  submits them with ``sbatch``, a run after the runs it needs
  (``--dependency=afterok``). Like MMRazor's ``.dev_scripts``, nothing is
  submitted unless asked (``--run``).

Every run's output goes to ``<work_dir>/run.log`` (configs, losses), the
terminal shows one line per run and a progress bar with an ETA.
"""
import os
import os.path as osp
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from .progress import progress
from .runs import MARKER, Run, order

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
GPUS_PER_NODE = 8


@dataclass
class LaunchOptions:
    """How runs start.

    Attributes:
        launcher (str): ``none``, ``pytorch`` or ``slurm``.
        gpus (int): Processes per run (GPUs; CPU processes without CUDA).
        amp (bool): Mixed precision (``tools/train.py --amp``).
        auto_scale_lr (bool): Scale the learning rate to the actual batch
            (``auto_scale_lr.enable=True``, the config's base batch size).
        partition (str): Slurm partition.
        port (int): First Slurm master port; each job gets its own
            (local runs take a free port).
        cpus_per_task (int): Slurm CPUs per process.
        python (str): Interpreter of the runs.
        srun_args (str): Extra ``#SBATCH`` lines' options, e.g.
            ``--time=48:00:00 --qos=high`` (one ``#SBATCH`` each).
    """

    launcher: str = 'none'
    gpus: int = 1
    amp: bool = False
    auto_scale_lr: bool = False
    partition: str = ''
    port: int = 29500
    cpus_per_task: int = 5
    python: str = sys.executable
    srun_args: str = ''


def tool_args(run: Run, opts: LaunchOptions) -> List[str]:
    """``tools/<train|test>.py`` and its arguments for ``run``."""
    if run.kind == 'train':
        args = [
            osp.join(REPO, 'tools', 'train.py'), run.config, '--work-dir',
            run.work_dir
        ]
        if opts.amp:
            args.append('--amp')
        if opts.auto_scale_lr:
            args += ['--cfg-options', 'auto_scale_lr.enable=True']
    elif run.kind == 'test':
        args = [
            osp.join(REPO, 'tools', 'test.py'), run.config, run.checkpoint,
            '--work-dir', run.work_dir
        ]
    else:
        raise ValueError(f'{run.name}: kind must be train or test, got '
                         f'{run.kind!r}')
    return args


def local_command(run: Run, opts: LaunchOptions, port: int) -> List[str]:
    """The command that runs ``run`` on this machine."""
    if opts.launcher == 'none':
        return [opts.python] + tool_args(run, opts)
    if opts.launcher == 'pytorch':
        return [
            opts.python, '-m', 'torch.distributed.run',
            f'--nproc_per_node={opts.gpus}', f'--master_port={port}'
        ] + tool_args(run, opts) + ['--launcher', 'pytorch']
    raise ValueError(f'launcher {opts.launcher!r} does not run locally')


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    return env


def free_port() -> int:
    """A TCP port nobody listens on now (for a local torchrun)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _start(run: Run, opts: LaunchOptions, threads: int):
    os.makedirs(run.work_dir, exist_ok=True)
    cmd = local_command(run, opts, free_port())
    log = open(osp.join(run.work_dir, 'run.log'), 'w')
    log.write(' '.join(shlex.quote(c) for c in cmd) + '\n')
    log.flush()
    env = _env()
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return proc, log, time.perf_counter()


def run_local(runs: List[Run],
              opts: LaunchOptions,
              logger=None,
              jobs: int = 1) -> Dict[str, str]:
    """Run every unfinished run, each after the runs it needs.

    Up to ``jobs`` runs at a time (each then gets ``cpu_count / jobs``
    OpenMP threads). A failed run is reported with the end of its log and
    the runs that need it are skipped; the others go on.

    Returns:
        dict: ``name -> 'done' | 'finished before' | 'failed' |
        'blocked'``.
    """
    status: Dict[str, str] = {}
    pending = []
    for r in order(runs):
        if r.finished():
            status[r.name] = 'finished before'
        else:
            pending.append(r)
    say = logger.info if logger else print
    say(f'{len(pending)} runs to do, {len(status)} finished before; each '
        'writes <work_dir>/run.log')
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    active: Dict[str, tuple] = {}
    with progress(len(pending)) as bar:
        while pending or active:
            for run in list(pending):
                if len(active) >= max(1, jobs):
                    break
                if any(
                        status.get(d) in ('failed', 'blocked')
                        for d in run.after):
                    status[run.name] = 'blocked'
                    say(f'{run.name}: not run (a run it needs failed)')
                    pending.remove(run)
                    bar.update()
                elif all(
                        status.get(d) in ('done', 'finished before')
                        for d in run.after):
                    pending.remove(run)
                    active[run.name] = (run, ) + _start(run, opts, threads)
            time.sleep(0.2)
            for name, (run, proc, log, t0) in list(active.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del active[name]
                if proc.returncode == 0:
                    run.mark_finished(time.perf_counter() - t0)
                    status[name] = 'done'
                else:
                    status[name] = 'failed'
                    try:
                        with open(log.name) as f:
                            tail = f.read()[-2000:]
                    except OSError as e:  # the work dir was removed
                        tail = str(e)
                    say(f'{name}: FAILED ({proc.returncode}), see '
                        f'{log.name}:\n{tail}')
                bar.update()
    return status


def slurm_script(run: Run, opts: LaunchOptions, port: int) -> str:
    """The text of ``run``'s ``job.sh``."""
    gpus = max(1, opts.gpus)
    per_node = min(gpus, GPUS_PER_NODE)
    nodes = -(-gpus // per_node)
    lines = [
        '#!/usr/bin/env bash',
        f'#SBATCH --job-name={run.name}',
        f'#SBATCH --partition={opts.partition}',
        f'#SBATCH --output={run.work_dir}/slurm-%j.out',
        f'#SBATCH --nodes={nodes}',
        f'#SBATCH --ntasks={gpus}',
        f'#SBATCH --ntasks-per-node={per_node}',
        f'#SBATCH --gres=gpu:{per_node}',
        f'#SBATCH --cpus-per-task={opts.cpus_per_task}',
        '#SBATCH --kill-on-invalid-dep=yes',
    ]
    lines += [f'#SBATCH {a}' for a in shlex.split(opts.srun_args)]
    py = ' '.join(
        shlex.quote(a) for a in tool_args(run, opts) + ['--launcher=slurm'])
    marker = osp.join(run.work_dir, MARKER)
    lines += [
        'set -e',
        f'cd {shlex.quote(REPO)}',
        f'export PYTHONPATH={shlex.quote(REPO)}:${{PYTHONPATH:-}}',
        f'export MASTER_PORT={port}',
        f'srun --kill-on-bad-exit=1 {shlex.quote(opts.python)} -u {py}',
        # what a local launch writes: the digest marks the run finished
        f"echo '{{\"digest\": \"{run.digest()}\", \"seconds\": null}}' > "
        f'{shlex.quote(marker)}',
    ]
    return '\n'.join(lines) + '\n'


def write_slurm(runs: List[Run], opts: LaunchOptions,
                out_dir: str) -> Optional[str]:
    """Write ``job.sh`` per unfinished run and ``<out_dir>/submit.sh``.

    Returns:
        str: The path of ``submit.sh`` (None when every run finished).
    """
    if not opts.partition:
        raise ValueError('--launcher slurm needs --partition')
    pending = [r for r in order(runs) if not r.finished()]
    if not pending:
        return None
    submit = ['#!/usr/bin/env bash', 'set -e']
    ids: Dict[str, str] = {}
    for i, run in enumerate(pending):
        os.makedirs(run.work_dir, exist_ok=True)
        job = osp.join(run.work_dir, 'job.sh')
        with open(job, 'w') as f:
            f.write(slurm_script(run, opts, opts.port + i))
        var = f'job{i}'
        deps = [ids[d] for d in run.after if d in ids]
        dep = (f' --dependency=afterok:{":".join(deps)}' if deps else '')
        submit.append(f'{var}=$(sbatch --parsable{dep} {shlex.quote(job)})')
        submit.append(f'echo "{run.name}: job ${var}"')
        ids[run.name] = f'${var}'
    path = osp.join(out_dir, 'submit.sh')
    os.makedirs(out_dir, exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(submit) + '\n')
    return path
