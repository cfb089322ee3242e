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
