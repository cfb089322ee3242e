"""Only rank 0 writes the test metrics json (MMEngine writes it on every
rank into one file, and concurrent writes corrupt it)."""
import json
from types import SimpleNamespace

import pytest
from mmengine.hooks import LoggerHook

from mmkd_channel.utils.runner_build import rank_zero_writes_test_json


class _Logs:

    def get_log_after_epoch(self, runner, n, mode, with_non_scalar):
        return {'accuracy/top1': 50.0}, f'Epoch({mode}) [{n}/{n}]'


@pytest.mark.parametrize('rank', [0, 1])
def test_only_rank_zero_writes_the_json(tmp_path, rank):
    hook = LoggerHook()
    hook.json_log_path = 'stamp.json'
    lines = []
    runner = SimpleNamespace(
        rank=rank,
        hooks=[hook],
        log_processor=_Logs(),
        test_dataloader=[0],
        log_dir=str(tmp_path),
        logger=SimpleNamespace(info=lines.append))
    rank_zero_writes_test_json(runner)
    hook.after_test_epoch(runner, metrics={'accuracy/top1': 50.0})
    assert lines == ['Epoch(test) [1/1]']  # every rank logs the line
    path = tmp_path / 'stamp.json'
    if rank == 0:
        assert json.loads(path.read_text()) == {'accuracy/top1': 50.0}
    else:
        assert not path.exists()
