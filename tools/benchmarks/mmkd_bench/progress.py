"""A progress bar with an ETA for long benchmark loops.

MMEngine's ``ProgressBar`` (what mmdet's tools use) draws
``[>>>   ] 3/20, 0.4 task/s, elapsed: 8s, ETA: 42s`` on the terminal; when
hidden, the same loop runs without it so tests and logs stay quiet.
"""
import contextlib
import sys
from typing import Iterator


class _NoBar:
    """Stand-in with ``ProgressBar``'s ``update`` when nothing is shown."""

    def update(self, num_tasks: int = 1) -> None:
        """Do nothing."""


@contextlib.contextmanager
def progress(total: int, show: bool = True) -> Iterator:
    """Yield an object whose ``update()`` advances a bar of ``total`` steps.

    Args:
        total (int): Number of steps.
        show (bool): Draw the bar (on stderr, so piped stdout stays
            parseable); otherwise ``update`` does nothing.
    """
    if not show or total <= 0:
        yield _NoBar()
        return
    from mmengine.utils import ProgressBar
    bar = ProgressBar(total, file=sys.stderr)
    try:
        yield bar
    finally:
        sys.stderr.write('\n')
        sys.stderr.flush()
