"""Build the Runner of our tools with the config dump in the log file only.

MMEngine's Runner logs the whole config (hundreds of lines for a detection
config) when it starts, to the terminal and to the log file. The training
and test tools keep it in the log file and print one line instead, so the
terminal shows the run's progress.
"""
import logging

from mmengine.config import Config
from mmengine.hooks import LoggerHook
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

CONFIG_PREFIX = 'Config:\n'


class ConfigToLogFile(logging.Filter):
    """A filter for the terminal handler: the config dump is replaced by a
    line naming the log file that holds it."""

    def __init__(self, stream, log_file: str) -> None:
        super().__init__()
        self.stream = stream
        self.log_file = log_file

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if isinstance(msg, str) and msg.startswith(CONFIG_PREFIX):
            self.stream.write(f'Config: in {self.log_file}\n')
            return False
        return True


def quiet_config(logger: logging.Logger) -> None:
    """Keep ``Config:`` dumps out of ``logger``'s terminal handlers."""
    files = [
        h.baseFilename for h in logger.handlers
        if isinstance(h, logging.FileHandler)
    ]
    if not files:  # nowhere else to put it: keep it on the terminal
        return
    for handler in logger.handlers:
        if (type(handler) is logging.StreamHandler and not any(
                isinstance(f, ConfigToLogFile) for f in handler.filters)):
            handler.addFilter(ConfigToLogFile(handler.stream, files[0]))


class QuietConfigRunner(Runner):
    """MMEngine's Runner; its config dump goes to the log file only."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        quiet_config(logger)
        return logger


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg`` (or the config's ``runner_type``), quietly.

    A custom ``runner_type`` is built as it is, with MMEngine's logging.
    """
    if 'runner_type' not in cfg:
        runner = QuietConfigRunner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    rank_zero_writes_test_json(runner)
    return runner


def _log_test_epoch(runner: Runner, metrics=None) -> None:
    """``LoggerHook.after_test_epoch`` without writing the json file."""
    _, log_str = runner.log_processor.get_log_after_epoch(
        runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
    runner.logger.info(log_str)


def rank_zero_writes_test_json(runner: Runner) -> None:
    """Let only rank 0 write ``<timestamp>.json`` after a test epoch.

    MMEngine 0.10.7's ``LoggerHook.after_test_epoch`` dumps the test
    metrics on every rank into the same file of the shared log dir; two
    processes writing it at once now and then leave a file with the tail
    of the other's write after the JSON (the metrics are the same on every
    rank, the timings are not), which readers of the file cannot parse.
    """
    if runner.rank == 0:
        return
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook):
            hook.after_test_epoch = _log_test_epoch
