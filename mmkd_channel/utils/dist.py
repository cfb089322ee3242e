"""Distributed training on machines without CUDA (gloo), the mm way.

MMEngine 0.10.7 assumes CUDA on its distributed path: ``init_dist`` calls
``torch.cuda.set_device`` for the ``pytorch`` and ``slurm`` launchers, the
Runner wraps the model with ``device_ids=[LOCAL_RANK]`` (a CUDA device) and
SyncBN layers stay in the model, where they fail on CPU tensors. The same
``tools/dist_train.sh`` / ``tools/slurm_train.sh`` command lines run on a
CPU-only machine once :func:`setup_launcher` has been applied to the config:

* the default process group is initialised here with the ``gloo`` backend
  from the launcher's environment (``RANK``/``WORLD_SIZE``/``MASTER_ADDR``
  from torchrun, ``SLURM_*`` from srun, ``OMPI_COMM_WORLD_*`` from mpirun),
  so the Runner finds it initialised and does not call ``init_dist``;
* ``model_wrapper_cfg`` becomes :class:`CPUDistributedDataParallel`
  (``MMDistributedDataParallel`` with ``device_ids=None`` that reverts SyncBN
  to BN with a warning).

With CUDA nothing changes: MMEngine's own path is used.
"""
import atexit
import datetime
import os
import subprocess
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger, print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _set_default_port() -> None:
    os.environ.setdefault('MASTER_PORT', '29500')


def _first_slurm_host(node_list: str) -> str:
    """First host name of a Slurm node list (``node[1-4],other``)."""
    try:
        out = subprocess.run(['scontrol', 'show', 'hostname', node_list],
                             capture_output=True,
                             text=True,
                             check=True)
        hosts = out.stdout.split()
        if hosts:
            return hosts[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    first = node_list.split(',')[0]
    if '[' not in first:
        return first
    raise KeyError(
        f'cannot expand SLURM_NODELIST={node_list!r} without scontrol; set '
        'MASTER_ADDR to the host of rank 0')


def _slurm_env() -> None:
    """Fill torch's ``env://`` variables from srun's ``SLURM_*`` ones."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    local_rank = os.environ.get('SLURM_LOCALID', '0')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = _first_slurm_host(
            os.environ['SLURM_NODELIST'])
    _set_default_port()
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(proc_id)


def _mpi_env() -> None:
    """Fill torch's ``env://`` variables from Open MPI's ones."""
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('--launcher mpi needs the environment variable '
                       'MASTER_ADDR (the address of rank 0)')
    _set_default_port()
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['LOCAL_RANK'] = os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK',
                                              '0')


def init_cpu_dist(launcher: str,
                  backend: str = 'gloo',
                  timeout: Optional[float] = None) -> None:
    """Initialise the default process group without touching CUDA.

    The CPU counterpart of :func:`mmengine.dist.init_dist`: the same
    launchers and environment variables, no ``torch.cuda.set_device``.

    Args:
        launcher (str): ``'pytorch'`` (torchrun), ``'slurm'`` (srun) or
            ``'mpi'`` (mpirun).
        backend (str): A backend that works on CPU tensors (``'gloo'``;
            ``'mpi'`` if torch was built with it).
        timeout (float, optional): Seconds before a collective times out.

    Raises:
        ValueError: for an unknown launcher or the ``nccl`` backend.
        KeyError: if the launcher's environment variables are missing.
    """
    if backend == 'nccl':
        raise ValueError('the nccl backend needs CUDA; use gloo on CPU')
    if launcher == 'pytorch':
        missing = [
            k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
            if k not in os.environ
        ]
        if missing:
            raise KeyError(
                f'--launcher pytorch: environment variables {missing} are '
                'not set. Start the script with torchrun (tools/'
                'dist_train.sh) or use --launcher none.')
    elif launcher == 'slurm':
        _slurm_env()
    elif launcher == 'mpi':
        _mpi_env()
    else:
        raise ValueError(f'invalid launcher {launcher!r}; expected one of '
                         f'{LAUNCHERS[1:]}')
    kwargs = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)
    # a group still alive at interpreter exit has its gloo threads torn
    # down by static destructors, which now and then aborts (SIGABRT) a
    # process that had finished or raised cleanly
    atexit.register(_destroy_group)


def _destroy_group() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def has_sync_bn(model: nn.Module) -> bool:
    """Whether ``model`` contains a torch or mmcv SyncBN layer."""
    return any('SyncBatchNorm' in type(m).__name__ for m in model.modules())


def revert_sync_bn_for_cpu(model: nn.Module) -> nn.Module:
    """Turn SyncBN into BN (SyncBN needs CUDA), with a logged warning.

    Each process then normalises with the statistics of its own batch, as
    BN does; the effective BN batch is the per-process batch.

    Args:
        model (nn.Module): Model to convert in place (its children).

    Returns:
        nn.Module: The converted model.
    """
    if not has_sync_bn(model):
        return model
    print_log(
        'SyncBN does not run on CPU tensors: converting every SyncBN layer '
        'of the model to BN. Each process now normalises with its own '
        'batch statistics (per-process batch size).',
        logger='current',
        level=30)
    # FeatureRecorder looks modules up by path on every call, so it hooks
    # the new BN layers.
    return revert_sync_batchnorm(model)


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for processes without CUDA.

    ``device_ids`` is always ``None`` (the module lives on the CPU) and
    SyncBN layers are reverted to BN first (:func:`revert_sync_bn_for_cpu`).
    Gradients are averaged over the processes by the gloo backend, exactly
    as with NCCL on GPUs. :func:`setup_launcher` selects it; it can also be
    named in a config: ``model_wrapper_cfg=dict(type=
    'CPUDistributedDataParallel')``.

    Args:
        module (nn.Module): Model to wrap.
        detect_anomalous_params (bool): As in
            :class:`MMDistributedDataParallel`.
        **kwargs: Passed to ``DistributedDataParallel`` (``device_ids`` and
            ``output_device`` are ignored).
    """

    def __init__(self,
                 module: nn.Module,
                 detect_anomalous_params: bool = False,
                 **kwargs) -> None:
        kwargs['device_ids'] = None
        kwargs.pop('output_device', None)
        module = revert_sync_bn_for_cpu(module)
        super().__init__(
            module=module,
            detect_anomalous_params=detect_anomalous_params,
            **kwargs)


def cpu_model_wrapper_cfg(cfg: Config) -> dict:
    """The ``model_wrapper_cfg`` to use for ``cfg`` on CPU.

    A user wrapper other than ``MMDistributedDataParallel`` is kept (with a
    warning if it is a DDP subclass that would get CUDA ``device_ids``).
    """
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        return dict(
            type='CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper = dict(wrapper)
    if wrapper.get(
            'type',
            'MMDistributedDataParallel') in ('MMDistributedDataParallel',
                                             'CPUDistributedDataParallel'):
        wrapper['type'] = 'CPUDistributedDataParallel'
    else:
        wrapper.setdefault('device_ids', None)
        MMLogger.get_current_instance().warning(
            f"model_wrapper_cfg type {wrapper['type']!r} is kept on CPU; "
            'it must support device_ids=None and models without SyncBN.')
    return wrapper


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Set ``cfg.launcher``; without CUDA also prepare the CPU path.

    Call it in a training or test script after loading the config and
    before building the Runner. Without CUDA and with a launcher other than
    ``'none'`` it initialises the gloo process group (so the Runner does
    not call MMEngine's CUDA-only ``init_dist``), sets
    ``env_cfg.dist_cfg.backend='gloo'`` and selects
    :class:`CPUDistributedDataParallel`. With CUDA it only sets
    ``cfg.launcher``.

    Args:
        cfg (Config): The loaded config, modified in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'invalid launcher {launcher!r}; expected one of '
                         f'{LAUNCHERS}')
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.get('env_cfg') or ConfigDict()
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    backend = dist_cfg.get('backend', 'gloo')
    if backend not in ('gloo', 'mpi'):
        print_log(
            f'dist_cfg.backend={backend!r} needs CUDA; using gloo on CPU.',
            logger='current',
            level=30)
        backend = 'gloo'
    dist_cfg['backend'] = backend
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    if not torch_dist.is_initialized():
        init_cpu_dist(launcher, backend, dist_cfg.get('timeout'))
    cfg.model_wrapper_cfg = cpu_model_wrapper_cfg(cfg)
    if cfg.get('sync_bn') is not None:
        print_log(
            f'sync_bn={cfg.sync_bn!r} ignored on CPU: SyncBN needs CUDA.',
            logger='current',
            level=30)
        cfg.sync_bn = None
