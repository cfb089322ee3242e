"""Host pairs the project does not ship, distilled by inheritance alone.

Each config in ``configs/`` is what a user writes: the host's own
baseline (or their own file), a shipped preset and a teacher, at most 10
lines of code, no channel counts and no module paths. Each one is built,
trained 2 iterations and validated with the host's evaluator on tiny
generated data, with the host's own ``custom_hooks`` (YOLOX's mode
switch, RTMDet's pipeline switch, EMA) running on the distiller.
"""
import glob
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd_channel.testing.tiny_configs import tiny_config

CONFIG_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'configs')
PAIRS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py')))


def code_lines(path: str) -> list:
    with open(path) as f:
        return [
            ln for ln in f if ln.strip() and not ln.strip().startswith('#')
        ]


def test_pairs_cover_the_families():
    assert len(PAIRS) >= 15
    text = ''.join(open(osp.join(CONFIG_DIR, p)).read() for p in PAIRS)
    for host in ('mmdet::', 'mmseg::', 'mmpretrain::'):
        assert text.count(host) >= 3, host


@pytest.mark.parametrize('name', PAIRS)
def test_pair_config_is_short_and_width_free(name):
    lines = code_lines(osp.join(CONFIG_DIR, name))
    assert len(lines) <= 10, f'{name}: {len(lines)} lines of code'
    text = ''.join(lines)
    for word in ('channels', 'distill = dict', "student='", 'connector'):
        assert word not in text, (name, word)


@pytest.mark.parametrize('name', PAIRS)
def test_pair_trains_and_validates(name, tiny_datasets, tmp_path):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    tiny_config(cfg, tiny_datasets, str(tmp_path))
    cfg.experiment_name = osp.splitext(name)[0]
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert model._checked, f'{name}: pairs not checked at build time'
    for pair in model.distill_pairs.values():
        for conn in (pair.connector, pair.teacher_connector):
            assert getattr(conn, 'is_built', True), pair.name
    runner.train()

    assert runner.iter == 2
    hub = runner.message_hub
    losses = [
        k for k in hub.log_scalars if k.startswith('train/') and 'loss' in k
    ]
    assert any(k.startswith('train/loss_distill_') for k in losses)
    for key in losses:
        values = hub.get_scalar(key).data[0]
        assert all(map(math.isfinite, values)), key
    metrics = [k for k in hub.log_scalars if k.startswith('val/')]
    assert metrics, f'{name}: no validation metric'
    check_host_hooks(runner, cfg)
    if 'caffe' in name:  # BGR, caffe mean, std 1 vs the student's RGB
        remap = model.teacher_input
        assert remap is not None and remap.flip


def check_host_hooks(runner, cfg) -> None:
    """The host's switch hooks really switched, on the distiller."""
    types = {h.get('type') for h in cfg.get('custom_hooks') or []}
    hooks = {type(h).__name__: h for h in runner.hooks}
    student = runner.model.student
    if 'YOLOXModeSwitchHook' in types:
        assert hooks['YOLOXModeSwitchHook']._has_switched
        assert student.bbox_head.use_l1  # set through the distiller
    if 'PipelineSwitchHook' in types:
        assert hooks['PipelineSwitchHook']._has_switched
    if 'EMAHook' in types:
        ema = hooks['EMAHook'].ema_model.module
        assert type(ema) is type(runner.model)
        assert ema.student is not student
