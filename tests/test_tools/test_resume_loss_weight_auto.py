"""``tools/train.py --resume`` keeps a ``loss_weight='auto'`` calibration.

The toy task (4 iterations per epoch, 3 epochs) calibrates over 6 steps. One
run is killed after epoch 1's checkpoint (during calibration, 4 of 6 steps
seen), resumed and killed after epoch 2 (calibration finished at step 6),
and resumed again to the end.
Everything, the calibration buffers included, must agree bitwise with an
uninterrupted 3-epoch run, and the resumed runs must say what they restored
instead of calibrating again.
"""
import signal
import subprocess
import sys

import torch
from mmkd_toy import REPO, subprocess_env, toy_config

from mmkd_channel.utils import safe_torch_load

CALIBRATION = dict(iters=6, target_ratio=0.5)


def start(work_dir, tmp_path, name, kill_after=None, *args):
    hooks = [] if kill_after is None else [
        dict(type='MMKDToyKillHook', after_epoch=kill_after)
    ]
    cfg = toy_config(
        str(work_dir),
        max_epochs=3,
        bn=True,
        custom_hooks=hooks,
        val=False,
        loss=dict(type='FeatureL2Loss', loss_weight='auto'),
        loss_weight_calibration=CALIBRATION)
    path = str(tmp_path / f'{name}.py')
    cfg.dump(path)
    return subprocess.Popen([sys.executable, 'tools/train.py', path, *args],
                            cwd=REPO,
                            env=subprocess_env(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True)


def finish(proc, killed=False) -> str:
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == (-signal.SIGKILL if killed else 0), out[-3000:]
    return out


def test_resume_during_and_after_calibration_is_bitwise(tmp_path):
    ref_dir, run_dir = tmp_path / 'ref', tmp_path / 'run'
    ref = start(ref_dir, tmp_path, 'ref')
    log = finish(start(run_dir, tmp_path, 'first', 1), killed=True)
    assert "loss_weight='auto' calibrated" not in log  # 4 of 6 steps
    first = safe_torch_load(str(run_dir / 'epoch_1.pth'))['state_dict']
    assert int(first['loss_weight_calibration.count']) == 4

    log = finish(
        start(run_dir, tmp_path, 'second', 2, '--resume'), killed=True)
    assert 'calibration resumed at step 5 of 6' in log
    assert log.count("loss_weight='auto' calibrated over the first 6") == 1

    log = finish(start(run_dir, tmp_path, 'third', None, '--resume'))
    assert 'restored from the checkpoint (frozen, not recalibrated)' in log
    assert "loss_weight='auto' calibrated" not in log
    ref_log = finish(ref)
    assert ref_log.count("loss_weight='auto' calibrated over the first") == 1

    expected = safe_torch_load(str(ref_dir / 'epoch_3.pth'))['state_dict']
    resumed = safe_torch_load(str(run_dir / 'epoch_3.pth'))['state_dict']
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    weight = expected['loss_weight_calibration.weight']
    assert int(expected['loss_weight_calibration.count']) == 6
    assert float(weight[0]) > 0
    # the frozen weight is the one the calibration chose at step 6
    second = safe_torch_load(str(run_dir / 'epoch_2.pth'))['state_dict']
    assert torch.equal(second['loss_weight_calibration.weight'], weight)
