"""A student at stride 32 and a teacher at stride 16 distill with ``align``;
without it the build-time check says which ``align`` fits."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from mmkd_channel.models import FeatureDistiller


def resnet(depth, stride16=False):
    backbone = dict(type='ResNet', depth=depth, num_stages=4)
    if stride16:  # last stage dilated instead of strided: 1/16
        backbone.update(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=4,
            in_channels=512,
            loss=dict(type='CrossEntropyLoss')))


def make(student_stride16, teacher_stride16, align):
    connector = dict(
        type='ChannelWiseTransform', in_channels=512, out_channels=512)
    if align is not None:
        connector['align'] = align
    return FeatureDistiller(
        student=resnet(18, student_stride16),
        teacher=resnet(34, teacher_stride16),
        distill=dict(
            last_stage=dict(
                student='backbone.layer4',
                connector=connector,
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 64, 64))


def batch():
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(2, 3, 64, 64, generator=g),
        data_samples=[DataSample().set_gt_label(i) for i in (0, 3)])


@pytest.mark.parametrize('student_stride16,align', [(False, 'bilinear'),
                                                    (True, 'adaptive_pool')])
def test_stride_16_and_32_distill(student_stride16, align):
    torch.manual_seed(0)
    model = make(student_stride16, not student_stride16, align)
    data = batch()
    x = data['inputs']
    with model.student_recorder.record() as s:
        model.student(x)
    t = model.teacher_features(x)
    s, t = s['backbone.layer4'], t['backbone.layer4']
    assert s.shape[-2:] != t.shape[-2:]  # 4x4 against 2x2
    pair = model.distill_pairs['last_stage']
    resized = (
        F.interpolate(s, t.shape[-2:], mode='bilinear', align_corners=False)
        if align == 'bilinear' else F.adaptive_avg_pool2d(s, t.shape[-2:]))
    expect = ((pair.connector.mlp(resized) - t)**2).mean()
    torch.testing.assert_close(pair(s, t), expect)

    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    before = pair.connector.mlp[0].weight.clone()
    for _ in range(2):
        log = model.train_step(data, optim)
        assert torch.isfinite(log['loss_distill_last_stage'])
    assert not torch.equal(before, pair.connector.mlp[0].weight)


@pytest.mark.parametrize('student_stride16,mode', [(False, 'bilinear'),
                                                   (True, 'adaptive_pool')])
def test_build_check_suggests_align(student_stride16, mode):
    with pytest.raises(
            ValueError,
            match=r"distill\['last_stage'\].*Only the spatial size differs.*"
            rf"align='{mode}'"):
        make(student_stride16, not student_stride16, None)
