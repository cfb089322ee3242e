"""A reduced-precision teacher across checkpoints, resume, device moves and
CPU DDP.

The teacher is not in ``state_dict``: a resumed run rebuilds it from its
config, reloads its own checkpoint and converts it (folds its BNs, casts it
to bf16) again, exactly once. These tests train a toy distiller with
``teacher_dtype='bf16'`` for 2 iterations, resume it in a new Runner and
check the rebuilt teacher is the freshly converted one, bit for bit.
"""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from torch import nn
from toy_models import ToyClassifier, randomise_bn, toy_cfg, toy_runner_cfg

from mmkd_channel.models import FeatureDistiller
from mmkd_channel.models.distillers import teacher_precision as tp

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DISTILL = dict(
    neck=dict(
        student='neck',
        connector=dict(
            type='ChannelWiseTransform', in_channels=8, out_channels=16),
        loss=dict(type='FeatureL2Loss')))
FOLDED = {'backbone.1': 'backbone.0', 'backbone.4': 'backbone.3'}


def model_cfg(teacher_ckpt: str, dtype: str = 'bf16') -> dict:
    return dict(
        type='mmkd_channel.FeatureDistiller',
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        teacher_ckpt=teacher_ckpt,
        teacher_dtype=dtype,
        teacher_channels_last=True,
        distill=DISTILL,
        check_input_shape=(1, 3, 16, 16))


def build(teacher_ckpt: str, dtype: str = 'bf16') -> FeatureDistiller:
    cfg = model_cfg(teacher_ckpt, dtype)
    cfg.pop('type')
    return FeatureDistiller(**cfg)


def runner_cfg(work_dir: str, teacher_ckpt: str, max_iters: int,
               resume: bool) -> dict:
    return toy_runner_cfg(
        model_cfg(teacher_ckpt),
        work_dir,
        dict(by_epoch=False, max_iters=max_iters),
        resume,
        f'precision_resume_{max_iters}_{resume}',
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        randomness=dict(seed=0))


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory) -> str:
    """A toy teacher checkpoint with non-trivial BN statistics (so that a
    second folding of an already folded BN would change the weights)."""
    torch.manual_seed(0)
    teacher = ToyClassifier(16)
    randomise_bn(teacher)
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def fresh(teacher_ckpt) -> FeatureDistiller:
    """The bf16 distiller as the config builds it, never trained."""
    return build(teacher_ckpt)


def assert_same_teacher(teacher: nn.Module, reference: nn.Module) -> None:
    """Same modules, tensors, dtypes and memory layout."""
    types = [type(m).__name__ for m in teacher.modules()]
    assert types == [type(m).__name__ for m in reference.modules()]
    ours, theirs = teacher.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype, key
        assert torch.equal(ours[key], value), key
        if value.dim() == 4:
            assert ours[key].is_contiguous(
                memory_format=torch.channels_last), key


def count_conversions(monkeypatch) -> dict:
    """Count :meth:`TeacherPrecision.convert` calls and BN foldings."""
    counts = dict(convert=0, fold=0)
    convert, fold = tp.TeacherPrecision.convert, tp._fold_into

    def counting_convert(*args, **kwargs):
        counts['convert'] += 1
        return convert(*args, **kwargs)

    def counting_fold(*args, **kwargs):
        counts['fold'] += 1
        return fold(*args, **kwargs)

    monkeypatch.setattr(tp.TeacherPrecision, 'convert', counting_convert)
    monkeypatch.setattr(tp, '_fold_into', counting_fold)
    return counts


def test_resume_rebuilds_and_converts_the_bf16_teacher_once(
        tmp_path, teacher_ckpt, fresh, monkeypatch):
    assert fresh.teacher_precision.folded == FOLDED
    work_dir = str(tmp_path)
    first = Runner(**runner_cfg(work_dir, teacher_ckpt, 2, resume=False))
    first.train()
    # training never touches the frozen teacher
    assert_same_teacher(first.model.teacher, fresh.teacher)

    saved = torch.load(osp.join(work_dir, 'iter_2.pth'), weights_only=False)
    state = saved['state_dict']
    assert not [k for k in state if k.startswith('teacher')]
    # the bf16 teacher leaks no bf16 tensor into what is saved
    assert all(v.dtype == torch.float32 for v in state.values()
               if v.is_floating_point())
    conn_key = 'distill_pairs.neck.connector.mlp.0.weight'
    assert torch.equal(state[conn_key],
                       first.model.distill_pairs.neck.connector.mlp[0].weight)

    # the student-only checkpoint (as export_student.py splits it) loads,
    # strictly, into the plain host model
    spec = importlib.util.spec_from_file_location(
        'export_student',
        osp.join(REPO, 'tools', 'model_converters', 'export_student.py'))
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    student_sd, dropped = export.split_state_dict(state)
    assert dropped and all(k.startswith('distill_pairs.') for k in dropped)
    host = ToyClassifier(8).eval()
    host.load_state_dict(student_sd, strict=True)
    x = torch.rand(2, 3, 16, 16)
    first.model.eval()
    with torch.no_grad():
        assert torch.equal(host(x), first.model.student(x))

    counts = count_conversions(monkeypatch)
    second = Runner(**runner_cfg(work_dir, teacher_ckpt, 3, resume=True))
    assert counts == dict(convert=1, fold=len(FOLDED))  # at build time
    second.train()  # resumes at iteration 2, trains the third
    assert second.iter == 3
    assert counts == dict(convert=1, fold=len(FOLDED))  # not on resume
    model = second.model
    assert model.teacher_precision.folded == FOLDED
    assert isinstance(model.teacher.backbone[1], tp._FoldedBN)
    assert_same_teacher(model.teacher, fresh.teacher)
    # resumed from the checkpoint, then trained one more step
    assert not torch.equal(model.distill_pairs.neck.connector.mlp[0].weight,
                           state[conn_key])
    model.eval()
    assert torch.equal(
        model.teacher_features(x)['neck'][0],
        fresh.teacher_features(x)['neck'][0])


@pytest.mark.parametrize('dtype', ['bf16', 'fp32'])
def test_load_state_dict_leaves_the_converted_teacher_alone(dtype, fresh):
    """``load_from`` (and resume) call ``load_state_dict`` with the saved
    student and connectors only: the teacher must neither be expected in
    it nor changed by it, so a run may resume with another dtype."""
    model = build(fresh.teacher_ckpt, dtype)
    reference = build(fresh.teacher_ckpt, dtype)
    # a saved state that differs from the model's own
    state = {
        k: v + 1.0 if v.is_floating_point() else v
        for k, v in fresh.state_dict().items()
    }
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    key = 'distill_pairs.neck.connector.mlp.0.weight'
    assert torch.equal(model.state_dict()[key], state[key])
    assert_same_teacher(model.teacher, reference.teacher)


@pytest.mark.parametrize('move,student_dtype', [
    (lambda m: m.to('cpu'), torch.float32),
    (lambda m: m.to(torch.float16), torch.float16),
    (lambda m: m.half(), torch.float16),
    (lambda m: m.half().float(), torch.float32),
    (lambda m: m.to('cpu', torch.float64), torch.float64),
])
@pytest.mark.parametrize('dtype', ['bf16', 'fp32'])
def test_moves_and_casts_keep_the_converted_teacher_exactly(
        move, student_dtype, dtype, teacher_ckpt):
    """``.to()`` / ``.half()`` / ``.float()`` of the distiller move the
    teacher but leave its dtype, layout, folding and values alone (an fp32
    channels-last teacher too: a round trip through fp16 would round its
    weights)."""
    model = build(teacher_ckpt, dtype)
    reference = build(teacher_ckpt, dtype)
    move(model)
    assert_same_teacher(model.teacher, reference.teacher)
    assert model.teacher_precision.folded == FOLDED
    # the student and connectors follow the cast as usual
    assert model.student.neck.conv.weight.dtype == student_dtype
    assert model.distill_pairs.neck.connector.mlp[0].weight.dtype == \
        student_dtype


def test_unfolded_bn_stays_fp32_through_half(teacher_ckpt):
    """A BN left unfolded (its conv's output is recorded) keeps fp32
    parameters and statistics through ``.half()``."""
    distill = dict(
        conv=dict(
            student='backbone.0',
            connector=dict(
                type='ChannelWiseTransform', in_channels=8, out_channels=16),
            loss=dict(type='FeatureL2Loss')))
    cfg = dict(model_cfg(teacher_ckpt), distill=distill)
    cfg.pop('type')
    model = FeatureDistiller(truncate_teacher=False, **cfg)
    bn = model.teacher.backbone[1]
    assert isinstance(bn, nn.BatchNorm2d)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    model.half()
    assert bn.weight.dtype == bn.running_var.dtype == torch.float32
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key  # not rounded to fp16
    assert model.teacher.backbone[0].weight.dtype == torch.bfloat16


def test_cpu_ddp_keeps_the_bf16_teacher_out_and_frozen(torchrun_env,
                                                       teacher_ckpt, fresh):
    from mmkd_channel.utils import CPUDistributedDataParallel, init_cpu_dist
    init_cpu_dist('pytorch')
    model = build(teacher_ckpt)
    ddp = CPUDistributedDataParallel(
        module=model, device_ids=[0], broadcast_buffers=False)
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in ddp.parameters()}
    ddp.train()
    x = torch.rand(2, 3, 16, 16)
    losses = ddp(x, [0, 1], mode='loss')
    sum(losses.values()).backward()
    assert model.distill_pairs.neck.connector.mlp[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    assert_same_teacher(model.teacher, fresh.teacher)
    assert torch.equal(
        model.teacher_features(x)['neck'][0],
        fresh.teacher_features(x)['neck'][0])
