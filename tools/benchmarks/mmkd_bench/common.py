"""What every benchmark needs: its logger, config loading and a description
of the machine for the reports."""
import os
import platform
from typing import Optional

from mmengine.config import Config
from mmengine.logging import MMLogger

LOGGER = 'mmkd_bench'


def get_logger(log_file: Optional[str] = None) -> MMLogger:
    """The benchmarks' MMEngine logger (console, and ``log_file`` if given
    when it is first created)."""
    if MMLogger.check_instance_created(LOGGER):
        return MMLogger.get_instance(LOGGER)
    return MMLogger.get_instance(LOGGER, log_file=log_file)


def load_config(path: str) -> Config:
    """``Config.fromfile`` for local paths and ``pkg::`` paths alike."""
    import mmkd_channel  # noqa: F401  (mmkd_channel:: scope)
    from mmkd_channel.utils import resolve_config_path
    return Config.fromfile(resolve_config_path(path))


def environment() -> dict:
    """Machine and library versions, for the report."""
    import mmengine
    import torch
    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        mmengine=mmengine.__version__,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        processor=platform.processor() or platform.machine())
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['processor'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    for name in ('mmdet', 'mmseg', 'mmpretrain'):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info


def machine_line() -> str:
    """``N CPUs (model), torch T threads`` or the GPU's name."""
    import torch
    env = environment()
    if torch.cuda.is_available():
        return f'GPU {torch.cuda.get_device_name(0)}'
    return (f"{env['cpu_count']} CPU cores ({env['processor']}), torch "
            f"{env['torch']} with {env['torch_threads']} threads")
