import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'tests'))
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def repo_root():
    return REPO


@pytest.fixture(scope='session')
def coco_data(tmp_path_factory):
    from mmkd_channel.testing import make_coco_detection
    return make_coco_detection(
        tmp_path_factory.mktemp('coco'), num_train=4, num_val=2)


@pytest.fixture
def torchrun_env(monkeypatch):
    """The environment torchrun gives a single worker (world size 1, a free
    local port); the process group is destroyed afterwards."""
    import socket

    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(port))
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
