"""CWD, KD, OFD and SAKD through the FeatureDistiller on toy host models:
clear errors when the distiller is built, labels reaching SAKD."""
import pytest
import torch
from mmengine.optim import OptimWrapper
from toy_models import toy_cfg

from mmkd_channel.models import FeatureDistiller, ofd_margin_from_bn


def make(distill, student=None, teacher=None):
    return FeatureDistiller(
        student=student or toy_cfg(8),
        teacher=teacher or toy_cfg(16),
        distill=distill,
        check_input_shape=(1, 3, 16, 16))


def batch(n=4):
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(n, 3, 16, 16, generator=g),
        data_samples=[i % 3 for i in range(n)])


def test_cwd_channel_mismatch_at_build():
    cwd = dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=5.0)
    with pytest.raises(
            ValueError,
            match=r"distill\['cwd'\]: student 'neck'"
            r'.*channel counts must match: student has 8, '
            'teacher 16'):
        make(dict(cwd=dict(student='neck', loss=cwd)))
    # with a connector it builds and trains
    model = make(
        dict(
            cwd=dict(
                student='neck',
                loss=cwd,
                connector=dict(
                    type='ConvBNConnector', in_channels=8, out_channels=16))))
    assert torch.isfinite(model(**batch(), mode='loss')['loss_distill_cwd'])


def test_cwd_spatial_mismatch_at_build():
    with pytest.raises(
            ValueError,
            match=r"student 'backbone.2' "
            r"\[\(1, 8, 16, 16\)\], teacher 'backbone.5' "
            r'\[\(1, 8, 8, 8\)\].*same spatial size'):
        make(
            dict(
                cwd=dict(
                    student='backbone.2',
                    teacher='backbone.5',
                    loss=dict(type='ChannelWiseDivergence'))),
            teacher=toy_cfg(8))


def test_kd_class_mismatch_at_build():
    with pytest.raises(
            ValueError,
            match=r"student 'head' \[\(1, 3\)\], "
            r"teacher 'head' \[\(1, 5\)\].*same number of "
            'classes.*student 3.*teacher 5'):
        make(
            dict(kd=dict(student='head', loss=dict(type='KDLoss'))),
            teacher=toy_cfg(16, num_classes=5))


@pytest.mark.parametrize('loss', ['KDLoss', 'ChannelWiseDivergence'])
def test_bad_tau_at_build(loss):
    with pytest.raises(
            ValueError,
            match=rf"distill\['x'\]\.loss: {loss}: "
            r'tau .* > 0, got tau=0'):
        make(dict(x=dict(student='head', loss=dict(type=loss, tau=0))))


def test_ofd_on_a_module_not_preceded_by_bn():
    ofd = dict(
        connector=dict(type='ConvBNConnector', in_channels=8, out_channels=16),
        teacher_connector=dict(type='MarginReLU'),
        loss=dict(type='PartialL2Loss'))
    for path, what in (('neck.conv', r'Conv2d output'), ('backbone.5',
                                                         r'ReLU output')):
        with pytest.raises(
                ValueError,
                match=rf"distill\['ofd'\]\.teacher_"
                rf"connector \(MarginReLU\): teacher feature "
                rf"'{path}' \({what}\) is not the output of a "
                "BatchNorm.*'backbone.layer4.2.relu:input#-1'"):
            make(
                dict(
                    ofd=dict(student='backbone.5:input', teacher=path, **ofd)))


def test_ofd_pre_relu_pair_trains():
    model = make(
        dict(
            ofd=dict(
                student='backbone.5:input',
                connector=dict(
                    type='ConvBNConnector', in_channels=8, out_channels=16),
                teacher_connector=dict(type='MarginReLU'),
                loss=dict(type='PartialL2Loss', loss_weight=1e-3))))
    relu = model.distill_pairs['ofd'].teacher_connector
    assert relu.bn_path == 'backbone.4'
    torch.testing.assert_close(relu.margin,
                               ofd_margin_from_bn(model.teacher.backbone[4]))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    log = model.train_step(batch(), optim)
    assert torch.isfinite(log['loss_distill_ofd'])


def sakd_distill(size=2, num_classes=3):
    uni = dict(type='ParamFreeUniformizer', output_size=size)
    return dict(
        sakd=dict(
            student='backbone',
            connector=uni,
            teacher_connector=uni,
            loss=dict(
                type='SemanticAwareLoss',
                in_features=size * size,
                num_classes=num_classes)))


def test_sakd_gets_the_labels_and_trains_its_branch():
    model = make(sakd_distill())
    b = batch()
    losses = model(**b, mode='loss')
    pair = model.distill_pairs['sakd']
    with model.student_recorder.record() as s:
        model.student(b['inputs'])
    t = model.teacher_features(b['inputs'])
    with_labels = pair(s['backbone'], t['backbone'], b['data_samples'])
    without = pair(s['backbone'], t['backbone'])
    torch.testing.assert_close(losses['loss_distill_sakd'], with_labels)
    assert with_labels > without  # the cross-entropy term is there
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    fc_before = pair.loss.fc.weight.detach().clone()
    model.train()
    model.train_step(b, optim)
    assert not torch.equal(pair.loss.fc.weight, fc_before)
    assert any(
        k.startswith('distill_pairs.sakd.loss.fc.')
        for k in model.state_dict())


def test_sakd_length_mismatch_at_build():
    bad = sakd_distill()
    bad['sakd']['loss']['in_features'] = 9
    with pytest.raises(ValueError, match=r'\(N, 9\).*in_features=4'):
        make(bad)
