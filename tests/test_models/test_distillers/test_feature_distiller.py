import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from toy_models import toy_cfg

from mmkd_channel.models import FeatureDistiller, FeatureRecorder


def cwt_distill(s_ch=8, t_ch=16, path='neck'):
    return dict(
        feat=dict(
            student=path,
            connector=dict(
                type='ChannelWiseTransform',
                in_channels=s_ch,
                out_channels=t_ch),
            loss=dict(type='FeatureL2Loss', loss_weight=1.0)))


def make(**kwargs):
    cfg = dict(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=cwt_distill(),
        check_input_shape=(1, 3, 16, 16))
    cfg.update(kwargs)
    return FeatureDistiller(**cfg)


def batch(n=4):
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(n, 3, 16, 16, generator=g),
        data_samples=[i % 3 for i in range(n)])


def test_recorder_records_the_named_modules():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU())
    rec = FeatureRecorder(model, ['0', '1'])
    x = torch.rand(1, 3, 2, 2)
    with rec.record() as out:
        y = model(x)
    torch.testing.assert_close(out['0'], model[0](x))
    assert out['1'] is y
    assert out['__calls__'] == {'0': 1, '1': 1}


def test_recorder_multiple_calls_and_stop():
    conv = torch.nn.Conv2d(3, 3, 1)
    model = torch.nn.Module()
    model.conv = conv
    calls = []

    def fwd(x):
        for _ in range(3):
            calls.append(1)
            x = conv(x)
        return x

    rec = FeatureRecorder(model, ['conv'])
    with rec.record() as out:
        fwd(torch.rand(1, 3, 2, 2))
    assert isinstance(out['conv'], tuple) and len(out['conv']) == 3
    calls.clear()
    with rec.record(stop_after={'conv': 2}) as out:
        fwd(torch.rand(1, 3, 2, 2))
        raise AssertionError('the forward pass should have been stopped')
    assert len(calls) == 2 and len(out['conv']) == 2


def test_loss_keys_and_tuple_levels():
    model = make()
    losses = model(**batch(), mode='loss')
    assert set(losses) == {'loss_cls', 'loss_distill_feat'}
    assert torch.isfinite(losses['loss_distill_feat'])
    # the neck gives 2 levels; the loss must be the sum over both
    with model.student_recorder.record() as s:
        model.student(batch()['inputs'])
    t = model.teacher_features(batch()['inputs'])
    conn = model.distill_pairs['feat'].connector
    expect = sum(
        ((conn(a) - b)**2).mean() for a, b in zip(s['neck'], t['neck']))
    torch.testing.assert_close(
        model.distill_pairs['feat'](s['neck'], t['neck']), expect)


def test_teacher_frozen_out_of_optimizer_and_checkpoint():
    torch.manual_seed(0)
    model = make()
    teacher_state = copy.deepcopy(model.teacher.state_dict())
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.train()
    student_before = copy.deepcopy(model.student.state_dict())
    for _ in range(3):
        model.train_step(batch(), optim)
    assert model.teacher.training is False
    assert all(not p.requires_grad for p in model.teacher.parameters())
    for k, v in model.teacher.state_dict().items():  # BN buffers included
        assert torch.equal(v, teacher_state[k]), k
    opt_ids = {
        id(p)
        for g in optim.optimizer.param_groups
        for p in g['params']
    }
    assert not opt_ids & {id(p) for p in model.teacher.parameters()}
    assert {id(p) for p in model.distill_pairs.parameters()} <= opt_ids
    assert any(not torch.equal(v, student_before[k])
               for k, v in model.student.state_dict().items())
    keys = model.state_dict().keys()
    assert not any(k.startswith('teacher.') for k in keys)
    assert any(k.startswith('student.') for k in keys)
    assert any(k.startswith('distill_pairs.feat.connector') for k in keys)


def test_predict_runs_student_only():
    model = make()
    model.eval()
    x = batch()['inputs']
    torch.testing.assert_close(
        model(x, mode='predict'), model.student(x, mode='predict'))
    with model.teacher_recorder.record() as t:
        model(x, mode='predict')
    assert t['__calls__'] == {'neck': 0}


def test_teacher_truncation_gives_identical_features():
    model = make()
    x = batch()['inputs']
    full = FeatureDistiller(**dict(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=cwt_distill(),
        truncate_teacher=False,
        check_input_shape=None))
    full.teacher.load_state_dict(model.teacher.state_dict())
    ran_head = []
    h = model.teacher.head.register_forward_hook(lambda *a: ran_head.append(1))
    t_trunc = model.teacher_features(x)
    h.remove()
    assert not ran_head  # the teacher stopped after the neck
    t_full = full.teacher_features(x)
    for a, b in zip(t_trunc['neck'], t_full['neck']):
        assert torch.equal(a, b)


def test_bad_module_path_lists_nearest():
    with pytest.raises(KeyError, match=r"'nek'.*Nearest existing paths.*neck"):
        make(distill=cwt_distill(path='nek'))


def test_channel_mismatch_gives_both_numbers():
    with pytest.raises(ValueError, match=r'in_channels=4.*has 8 channels'):
        make(distill=cwt_distill(s_ch=4))
    with pytest.raises(ValueError, match=r'out_channels=12.*has 16 channels'):
        make(distill=cwt_distill(t_ch=12))


def test_no_connector_shape_mismatch_names_paths_and_shapes():
    distill = dict(feat=dict(student='neck', loss=dict(type='FeatureL2Loss')))
    with pytest.raises(
            ValueError,
            match=r"student 'neck' \[\(1, 8, 8, 8\).*teacher "
            r"'neck' \[\(1, 16, 8, 8\)"):
        make(distill=distill)


def test_missing_teacher_checkpoint_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match='teacher_ckpt'):
        make(teacher_ckpt=str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='teacher: config file'):
        make(teacher=str(tmp_path / 'nope.py'))


def test_teacher_checkpoint_loaded(tmp_path):
    src = make()
    path = tmp_path / 'teacher.pth'
    torch.save({
        'state_dict': src.teacher.state_dict(),
        'meta': {
            'epoch': 3
        }
    }, path)
    model = make(teacher_ckpt=str(path))
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, src.teacher.state_dict()[k])
    torch.save({'state_dict': src.student.state_dict()}, tmp_path / 's.pth')
    with pytest.raises(ValueError, match='another architecture'):
        make(teacher_ckpt=str(tmp_path / 's.pth'))


def test_empty_distill():
    with pytest.raises(ValueError, match='`distill` is empty'):
        make(distill={})


def test_recorder_input_and_last_call_survive_truncation():
    """'relu:input#-1' is the pre-ReLU input of the last of several calls;
    the forward may only stop once the block owning the relu returned."""

    class Block(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.relu = torch.nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.relu(x - 1.0)
            return self.relu(self.conv(x) - 0.5)

    model = torch.nn.Sequential(Block(), torch.nn.Conv2d(3, 3, 1))
    ran_tail = []
    model[1].register_forward_hook(lambda *a: ran_tail.append(1))
    x = torch.rand(1, 3, 4, 4)
    rec = FeatureRecorder(model, ['0.relu:input#-1', '0.relu:input#0'])
    with rec.record(stop_after={}) as out:
        model(x)
    first = x - 1.0
    last = model[0].conv(torch.relu(first)) - 0.5
    torch.testing.assert_close(out['0.relu:input#0'], first)
    torch.testing.assert_close(out['0.relu:input#-1'], last)
    assert (out['0.relu:input#-1'] < 0).any()  # pre-ReLU, not clamped
    assert out['__calls__']['0.relu:input#-1'] == 2
    assert not ran_tail  # stopped after the block, before model[1]


def test_recorder_refuses_outputs_changed_in_place():
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(bn, torch.nn.ReLU(inplace=True))
    rec = FeatureRecorder(model, ['0'])
    with pytest.raises(RuntimeError, match=r"'0'.*modified in place.*:input"):
        with rec.record():
            model(torch.randn(2, 3, 4, 4))
    rec = FeatureRecorder(model, ['1:input'])
    with rec.record() as out:
        y = model(torch.randn(2, 3, 4, 4))
    assert (out['1:input'] < 0).any() and not (y < 0).any()
