"""The toy task of tests/test_tools (``import mmkd_toy``) and a checkpoint
written by a host's own training script."""
import os
import os.path as osp
import sys

import pytest
from mmengine.config import Config

TOOLS_TESTS = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_tools')
if TOOLS_TESTS not in sys.path:
    sys.path.insert(0, TOOLS_TESTS)


@pytest.fixture(scope='session')
def host_trained(tmp_path_factory) -> dict:
    """A checkpoint written by mmpretrain's own tools/train.py with plain
    MMEngine (mmkd_channel is not imported in that process): ResNet-18,
    one iteration on 4 generated 32-px images.

    Returns:
        dict: ``checkpoint``, ``cfg`` (the dumped host config), ``model``
        (the host model dict), ``proc`` (the finished training process).
    """
    import importlib.util
    import subprocess
    import sys

    from mmkd_channel.testing import make_imagenet
    from mmkd_channel.testing.tiny_configs import tiny_cls_config
    from mmkd_channel.utils import resolve_config_path
    tmp = tmp_path_factory.mktemp('host_trained')
    data = make_imagenet(
        tmp / 'data',
        num_classes=4,
        per_class_train=1,
        per_class_val=1,
        img_size=(32, 32))
    cfg = Config.fromfile(
        resolve_config_path('mmpretrain::resnet/resnet18_8xb32_in1k.py'))
    tiny_cls_config(cfg, data, str(tmp / 'work'), img_size=32, batch_size=4)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.pop('custom_imports', None)
    cfg_path = str(tmp / 'resnet18_tiny.py')
    cfg.dump(cfg_path)
    spec = importlib.util.find_spec('mmpretrain')
    train_py = osp.join(osp.dirname(spec.origin), '.mim', 'tools', 'train.py')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)  # the installed packages only
    proc = subprocess.run([sys.executable, train_py, cfg_path],
                          cwd=str(tmp),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(
        checkpoint=str(tmp / 'work' / 'epoch_1.pth'),
        cfg=cfg_path,
        model=cfg.model.to_dict(),
        proc=proc)
