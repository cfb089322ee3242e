"""The teacher runs in reduced precision under AMP (autocast).

Under ``--amp`` MMEngine runs the model's forward inside
``optim_wrapper.optim_context`` (``torch.autocast``); the teacher forward is
part of ``FeatureDistiller.loss``, so it runs in fp16 on GPU too. On CPU
MMEngine 0.10.7 refuses ``AmpOptimWrapper``; the mechanism is checked
with CPU autocast (bfloat16) here and end to end on GPU when one exists.
"""
import importlib.util
import os.path as osp
import sys

import pytest
import torch
from mmengine.optim import AmpOptimWrapper
from toy_models import toy_cfg

from mmkd_channel.models import FeatureDistiller

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def distiller() -> FeatureDistiller:
    return FeatureDistiller(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            neck=dict(
                student='neck',
                connector=dict(
                    type='ChannelWiseTransform',
                    in_channels=8,
                    out_channels=16),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


def record_teacher_dtypes(model) -> list:
    dtypes = []
    model.teacher.neck.register_forward_hook(
        lambda m, a, out: dtypes.append(out[0].dtype))
    return dtypes


def test_teacher_runs_in_bfloat16_under_cpu_autocast():
    model = distiller()
    dtypes = record_teacher_dtypes(model)
    inputs = torch.rand(2, 3, 16, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(inputs, [0, 1], mode='loss')
    assert dtypes == [torch.bfloat16]
    assert all(torch.isfinite(v) for v in losses.values())
    losses['loss_distill_neck'].backward()
    grad = model.distill_pairs.neck.connector.mlp[0].weight.grad
    assert grad is not None and grad.dtype == torch.float32
    # without autocast the teacher stays in fp32; its weights always are
    model(inputs, [0, 1], mode='loss')
    assert dtypes[-1] == torch.float32
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only behaviour')
def test_mmengine_refuses_amp_on_cpu_and_train_py_says_so(
        monkeypatch, tmp_path):
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(AssertionError, match='only available'):
        AmpOptimWrapper(optimizer=opt)
    spec = importlib.util.spec_from_file_location(
        'mmkd_train', osp.join(REPO, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("model = dict(type='X')\noptim_wrapper = dict()\n")
    monkeypatch.setattr(sys, 'argv', ['train.py', str(cfg), '--amp'])
    with pytest.raises(SystemExit, match='--amp needs a GPU'):
        train.main()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_teacher_runs_in_fp16_under_amp_optim_wrapper():
    model = distiller().cuda()
    dtypes = record_teacher_dtypes(model)
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    data = dict(
        inputs=torch.rand(2, 3, 16, 16).cuda(),
        data_samples=torch.tensor([0, 1]).cuda())
    model.train_step(data, wrapper)
    assert dtypes == [torch.float16]
