"""Teacher precision on toy models: conversion, BN folding, casts, grads,
truncation and the build-time check in every precision."""
import copy
import logging
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from torch import nn
from toy_models import randomise_bn, toy_cfg

from mmkd_channel.models import FeatureDistiller
from mmkd_channel.models.distillers import DistillCheckError
from mmkd_channel.models.distillers import teacher_precision as tp

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def cpu_runs(dtype: torch.dtype) -> bool:
    """Whether this torch has CPU conv kernels for ``dtype``."""
    try:
        F.conv2d(
            torch.ones(1, 2, 4, 4, dtype=dtype),
            torch.ones(2, 2, 3, 3, dtype=dtype))
    except RuntimeError:
        return False
    return True


#: every precision, those the CPU cannot run skipped with the reason
PRECISIONS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            not torch.cuda.is_available() and not cpu_runs(dtype),
            reason=f'this torch build has no {name} conv kernels on CPU'))
    for name, dtype in DTYPES.items()
]


def distiller(dtype='bf16', channels_last=False, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault(
        'distill',
        dict(
            neck=dict(
                student='neck',
                connector=dict(
                    type='ChannelWiseTransform',
                    in_channels=8,
                    out_channels=16),
                loss=dict(type='FeatureL2Loss'))))
    kwargs.setdefault('check_input_shape', (1, 3, 16, 16))
    return FeatureDistiller(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        teacher_dtype=dtype,
        teacher_channels_last=channels_last,
        **kwargs)


@pytest.fixture
def teacher_ckpt(tmp_path):
    """A toy teacher checkpoint with random BN statistics."""
    model = distiller('fp32').teacher
    randomise_bn(model)
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


def rel_err(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@contextmanager
def log_messages():
    """Messages logged by the current MMLogger inside the block."""
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    messages = []
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        messages.extend(r.getMessage() for r in records)


# ---------------------------------------------------------------------- #
# options and 'auto'
def test_bad_options_raise_at_build_naming_the_key():
    with pytest.raises(ValueError, match=r"teacher_dtype='float16'.*'bf16'"):
        distiller('float16')
    with pytest.raises(TypeError, match='teacher_channels_last must be'):
        distiller('bf16', channels_last='yes')


@pytest.mark.parametrize('flags,onednn,cuda,expected', [
    (['amx_bf16', 'avx512_bf16'], True, False, 'bf16'),
    (['avx512_bf16'], False, False, 'fp32'),
    ([], True, False, 'fp32'),
    ([], True, True, 'bf16'),
])
def test_auto_choice_and_its_log(monkeypatch, flags, onednn, cuda, expected):
    """Both ways of every probe (CPU flags, oneDNN, CUDA) mocked, so the
    choice and the logged reason do not depend on the machine."""
    monkeypatch.setattr(tp, 'cpu_bf16_flags', lambda: flags)
    monkeypatch.setattr(torch.backends.mkldnn, 'is_available', lambda: onednn)
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability',
                        lambda: 'AVX512')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a: 'GPU-X')
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a: True)
    choice, reason = tp.choose_auto_dtype()
    assert choice == expected
    if cuda:
        assert reason == "CUDA device 'GPU-X' supports bf16"
    elif expected == 'bf16':
        assert reason == ('CPU has amx_bf16/avx512_bf16 (torch CPU '
                          'capability AVX512, oneDNN available)')
    elif flags:
        assert reason == ('CPU has avx512_bf16 but this torch has no '
                          'oneDNN, whose kernels use them')
    else:
        assert reason == ('CPU has no avx512_bf16/amx_bf16 flag (torch CPU '
                          'capability AVX512), bf16 would be emulated')

    with log_messages() as messages:
        model = distiller('auto')
    assert any(f'teacher_dtype=auto chose {choice}: {reason}.' in m
               for m in messages), messages
    assert model.teacher_precision.requested == 'auto'
    assert model.teacher.neck.conv.weight.dtype == DTYPES[choice]


def test_auto_on_this_machine_follows_cpu_flags():
    with open('/proc/cpuinfo') as f:
        text = f.read()
    fast = 'avx512_bf16' in text or 'amx_bf16' in text
    if torch.cuda.is_available():
        pytest.skip('CUDA decides on a GPU machine')
    assert tp.choose_auto_dtype()[0] == ('bf16' if fast else 'fp32')


# ---------------------------------------------------------------------- #
# conversion
def test_fp32_default_leaves_teacher_untouched():
    model = distiller('fp32')
    assert not model.teacher_precision.active
    assert sum(isinstance(m, nn.BatchNorm2d)
               for m in model.teacher.modules()) == 2
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())


def test_conversion_folds_bn_keeps_paths_and_dtypes(teacher_ckpt):
    model = distiller('bf16', channels_last=True, teacher_ckpt=teacher_ckpt)
    teacher = model.teacher
    # both backbone BNs follow a conv whose output only they read
    assert model.teacher_precision.folded == {
        'backbone.1': 'backbone.0',
        'backbone.4': 'backbone.3'
    }
    assert isinstance(teacher.backbone[1], tp._FoldedBN)
    conv = teacher.backbone[0]
    assert conv.weight.dtype == torch.bfloat16 and conv.bias is not None
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_folded_fp32_features_equal_unfolded(teacher_ckpt):
    """fp32 + channels-last only folds BN: features equal to the plain
    teacher's up to fp32 rounding."""
    plain = distiller('fp32', teacher_ckpt=teacher_ckpt)
    folded = distiller('fp32', channels_last=True, teacher_ckpt=teacher_ckpt)
    assert len(folded.teacher_precision.folded) == 2
    x = torch.rand(2, 3, 16, 16)
    a = plain.teacher_features(x)['neck']
    b = folded.teacher_features(x)['neck']
    for u, v in zip(a, b):
        assert v.dtype == torch.float32 and v.is_contiguous()
        assert rel_err(v, u) < 1e-5


def test_recorded_conv_output_is_not_folded(teacher_ckpt):
    model = distiller(
        'bf16',
        teacher_ckpt=teacher_ckpt,
        truncate_teacher=False,  # else BN 4 never runs and is not folded
        distill=dict(
            conv=dict(
                student='backbone.0',
                connector=dict(
                    type='ChannelWiseTransform',
                    in_channels=8,
                    out_channels=16),
                loss=dict(type='FeatureL2Loss'))))
    assert model.teacher_precision.folded == {'backbone.4': 'backbone.3'}
    bn = model.teacher.backbone[1]
    assert isinstance(bn, nn.BatchNorm2d)
    # an unfolded BN keeps its parameters and statistics in fp32
    assert bn.weight.dtype == bn.running_var.dtype == torch.float32
    assert model.teacher.backbone[0].weight.dtype == torch.bfloat16


class StandardisedConv(nn.Conv2d):
    """Weight standardisation: a scale folded into the weight is undone."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (
            w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_folding_that_changes_features_is_undone(teacher_ckpt):
    teacher = copy.deepcopy(
        distiller('fp32', teacher_ckpt=teacher_ckpt).teacher)
    ws = StandardisedConv(3, 16, 3, padding=1)
    ws.load_state_dict(teacher.backbone[0].state_dict())
    teacher.backbone[0] = ws
    x = torch.rand(1, 3, 16, 16)
    reference = teacher.backbone(x)
    precision = tp.TeacherPrecision('fp32', channels_last=True)
    with log_messages() as messages:
        precision.convert(teacher, lambda: {'backbone': teacher.backbone(x)})
    assert any("changed the recorded feature(s) ['backbone']" in m
               for m in messages), messages
    assert precision.folded == {}
    assert isinstance(teacher.backbone[1], nn.BatchNorm2d)
    assert isinstance(teacher.backbone[4], nn.BatchNorm2d)
    assert rel_err(teacher.backbone(x), reference) < 1e-5


def test_to_and_float_keep_the_teacher_dtype():
    model = distiller('bf16', channels_last=True)
    model.float()
    model.to('cpu')
    model.to(torch.float32)
    conv = model.teacher.neck.conv
    assert conv.weight.dtype == torch.bfloat16
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # the student and connectors follow .float() as usual
    assert all(p.dtype == torch.float32 for p in model.student.parameters())
    model.double()
    assert conv.weight.dtype == torch.bfloat16
    assert model.student.neck.conv.weight.dtype == torch.float64


# ---------------------------------------------------------------------- #
# running, in every precision
@pytest.mark.parametrize('dtype', list(DTYPES))
@pytest.mark.parametrize('channels_last', [False, True])
def test_features_come_back_in_student_dtype_and_no_grad_reaches_teacher(
        dtype, channels_last, teacher_ckpt):
    model = distiller(
        dtype, channels_last=channels_last, teacher_ckpt=teacher_ckpt)
    seen = []
    model.teacher.neck.register_forward_hook(
        lambda m, a, out: seen.append(out[0].dtype))
    model.train()
    x = torch.rand(2, 3, 16, 16)
    losses = model(x, [0, 1], mode='loss')
    assert seen == [DTYPES[dtype]]
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert model.distill_pairs.neck.connector.mlp[0].weight.grad is not None
    feats = model.teacher_features(x)['neck']
    assert all(
        f.dtype == torch.float32 and f.is_contiguous() and not f.requires_grad
        for f in feats)
    reference = distiller('fp32', teacher_ckpt=teacher_ckpt)
    tol = {'fp32': 1e-5, 'bf16': 2e-2, 'fp16': 2e-3}[dtype]
    for f, r in zip(feats, reference.teacher_features(x)['neck']):
        assert rel_err(f, r) < tol


@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_converted_teacher_ignores_autocast(dtype):
    model = distiller(dtype)
    seen = []
    model.teacher.neck.register_forward_hook(
        lambda m, a, out: seen.append(out[0].dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(torch.rand(2, 3, 16, 16), [0, 1], mode='loss')
    assert seen == [DTYPES[dtype]]


@pytest.mark.parametrize('dtype', PRECISIONS)
def test_truncation_in_every_precision(dtype):
    model = distiller(dtype, channels_last=True)
    head_calls = []
    model.teacher.head.register_forward_hook(lambda *a: head_calls.append(1))
    x = torch.rand(2, 3, 16, 16)
    cut = model.teacher_features(x)
    assert head_calls == []
    model.truncate_teacher = False
    full = model.teacher_features(x)
    assert head_calls == [1]
    for a, b in zip(cut['neck'], full['neck']):
        assert torch.equal(a, b)


@pytest.mark.parametrize('dtype', PRECISIONS)
def test_truncation_after_a_folded_bn(dtype, teacher_ckpt):
    """A recorded BN that was folded into its conv (now a ``_FoldedBN``
    at the same path) is still recorded, and the teacher stops there."""
    bn = dict(
        bn=dict(
            student='backbone.4',
            connector=dict(
                type='ChannelWiseTransform', in_channels=8, out_channels=16),
            loss=dict(type='FeatureL2Loss')))
    model = distiller(
        dtype, channels_last=True, teacher_ckpt=teacher_ckpt, distill=bn)
    assert model.teacher_precision.folded['backbone.4'] == 'backbone.3'
    later = []
    model.teacher.backbone[5].register_forward_hook(lambda *a: later.append(1))
    model.teacher.neck.register_forward_hook(lambda *a: later.append(2))
    x = torch.rand(2, 3, 16, 16)
    feat = model.teacher_features(x)['backbone.4']
    assert later == []
    assert feat.shape == (2, 16, 8, 8) and feat.dtype == torch.float32
    plain = distiller('fp32', teacher_ckpt=teacher_ckpt, distill=bn)
    tol = {'fp32': 1e-5, 'bf16': 2e-2, 'fp16': 2e-3}[dtype]
    assert rel_err(feat, plain.teacher_features(x)['backbone.4']) < tol


@pytest.mark.parametrize('dtype', PRECISIONS)
def test_build_time_check_in_every_precision(dtype):
    """The dry run that checks the pairs runs the converted teacher: a
    wrong width (seen only in the teacher's features) and a wrong path
    are both reported, with their fixes, when the distiller is built."""
    bad = dict(
        neck=dict(
            student='neck',
            connector=dict(
                type='ChannelWiseTransform', in_channels=8, out_channels=12),
            loss=dict(type='FeatureL2Loss')),
        typo=dict(
            student='neck',
            teacher='nek',
            connector=dict(
                type='ChannelWiseTransform', in_channels=8, out_channels=16),
            loss=dict(type='FeatureL2Loss')))
    with pytest.raises(DistillCheckError) as info:
        distiller(dtype, channels_last=True, distill=bad)
    message = str(info.value)
    assert '2 problem(s)' in message, message
    assert "out_channels=12 but the teacher feature 'neck' has 16 " \
        'channels' in message
    assert 'Fix: set out_channels=16' in message
    assert "teacher module path 'nek'" in message
    good = distiller(dtype, channels_last=True)
    assert good._checked
    assert good.teacher.neck.conv.weight.dtype == DTYPES[dtype]


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='runs the fp16 / bf16 teacher on a GPU: no CUDA device here')
@pytest.mark.parametrize('dtype', ['fp16', 'bf16'])
def test_cuda_teacher_precision(dtype, teacher_ckpt):
    if dtype == 'bf16' and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bf16')
    model = distiller(dtype, channels_last=True, teacher_ckpt=teacher_ckpt)
    model = model.cuda()
    conv = model.teacher.backbone[0]
    assert conv.weight.is_cuda and conv.weight.dtype == DTYPES[dtype]
    x = torch.rand(2, 3, 16, 16, device='cuda')
    losses = model(x, torch.tensor([0, 1]).cuda(), mode='loss')
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    reference = distiller('fp32', teacher_ckpt=teacher_ckpt).cuda()
    for f, r in zip(
            model.teacher_features(x)['neck'],
            reference.teacher_features(x)['neck']):
        assert f.dtype == torch.float32
        assert rel_err(f, r) < 2e-2


def test_conversion_does_not_draw_from_the_global_generator():
    """Seeded runs give the same connectors and data order whatever the
    teacher's precision: the dummy pass that finds the BNs to fold uses a
    generator of its own."""
    model = distiller('fp32')
    state = torch.get_rng_state()
    trace, _ = model._teacher_trace((1, 3, 16, 16))
    trace()
    assert torch.equal(torch.get_rng_state(), state)
    draws = []
    for dtype in ('fp32', 'bf16'):
        model = distiller(dtype, channels_last=True)  # seeds 0 first
        draws.append(
            (model.distill_pairs.neck.connector.mlp[0].weight, torch.rand(3)))
    assert torch.equal(draws[0][0], draws[1][0])
    assert torch.equal(draws[0][1], draws[1][1])


def test_ofd_margin_comes_from_the_bn_before_it_is_folded(teacher_ckpt):
    """MarginReLU reads the teacher BN when it is bound; folding that BN
    afterwards must not change the margin or the pre-ReLU feature."""
    ofd = dict(
        stage=dict(
            student='backbone.5:input',
            teacher='backbone.5:input',
            connector=dict(
                type='ChannelWiseTransform', in_channels=8, out_channels=16),
            teacher_connector=dict(type='MarginReLU'),
            loss=dict(type='FeatureL2Loss')))
    fp32 = distiller('fp32', teacher_ckpt=teacher_ckpt, distill=ofd)
    bf16 = distiller(
        'bf16', channels_last=True, teacher_ckpt=teacher_ckpt, distill=ofd)
    assert 'backbone.4' in bf16.teacher_precision.folded
    margins = [
        m.distill_pairs.stage.teacher_connector.margin for m in (fp32, bf16)
    ]
    assert margins[0].numel() == 16 and margins[0].dtype == torch.float32
    assert torch.equal(margins[0], margins[1])
    x = torch.rand(2, 3, 16, 16)
    a = fp32.teacher_features(x)['backbone.5:input']
    b = bf16.teacher_features(x)['backbone.5:input']
    assert rel_err(b, a) < 2e-2


def test_every_teacher_is_converted_with_several(teacher_ckpt):
    """``teachers=``: each teacher gets its own conversion (its own BNs
    folded) and keeps it through ``.half()``; features of both come back
    in the student's dtype."""
    pair = dict(
        student='neck',
        connector=dict(
            type='ChannelWiseTransform', in_channels=8, out_channels=16),
        loss=dict(type='FeatureL2Loss'))
    torch.manual_seed(0)
    model = FeatureDistiller(
        student=toy_cfg(8),
        teachers=dict(
            a=dict(config=toy_cfg(16), ckpt=teacher_ckpt),
            b=dict(config=toy_cfg(16), ckpt=None)),
        distill=dict(
            from_a=dict(pair, teacher_model='a'),
            from_b=dict(pair, teacher_model='b')),
        teacher_dtype='bf16',
        teacher_channels_last=True,
        check_input_shape=(1, 3, 16, 16))
    assert set(model.teacher_precisions) == {'a', 'b'}
    model.half()
    x = torch.rand(2, 3, 16, 16)
    for name, teacher in model.teachers.items():
        assert model.teacher_precisions[name].folded == {
            'backbone.1': 'backbone.0',
            'backbone.4': 'backbone.3'
        }, name
        assert isinstance(teacher.backbone[1], tp._FoldedBN)
        assert teacher.neck.conv.weight.dtype == torch.bfloat16
        feats = model.teacher_features(x.half(), teacher=name)['neck']
        assert all(f.dtype == torch.float16 for f in feats)
    # 'a' loaded its checkpoint before folding: its conv is the folded one
    plain = distiller('fp32', teacher_ckpt=teacher_ckpt)
    a = model.teacher_features(x.half(), teacher='a')['neck'][0].float()
    assert rel_err(a, plain.teacher_features(x)['neck'][0]) < 2e-2
