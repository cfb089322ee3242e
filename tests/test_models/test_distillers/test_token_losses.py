"""Tokens of a DeiT block distil into a ResNet stage with each loss: CWT
(L2 after the channel MLP), CWD and plain L2 after a 1x1 conv + BN."""
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from mmkd_channel.models import FeatureDistiller

STUDENT = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(type='ResNet', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=4, in_channels=512))
DEIT = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(
        type='VisionTransformer', arch='deit-tiny', img_size=64,
        patch_size=16),
    neck=None,
    head=dict(type='VisionTransformerClsHead', num_classes=4, in_channels=192))

TERMS = {
    'cwt': (dict(type='ChannelWiseTransform',
                 align='bilinear'), dict(type='FeatureL2Loss')),
    'cwd': (dict(type='ConvBNConnector', align='bilinear'),
            dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=3.0)),
    'l2': (dict(type='ConvBNConnector',
                align='bilinear'), dict(type='FeatureL2Loss')),
}


@pytest.mark.parametrize('name', sorted(TERMS))
def test_tokens_to_cnn_stage_with_each_loss(name):
    connector, loss = TERMS[name]
    torch.manual_seed(0)
    model = FeatureDistiller(
        student=STUDENT,
        teacher=DEIT,
        distill=dict(
            tokens=dict(
                student='backbone.layer4',
                teacher='backbone.layers.11',
                connector=connector,
                teacher_connector=dict(type='TokensToMap'),
                loss=loss)),
        check_input_shape=(1, 3, 64, 64))
    pair = model.distill_pairs['tokens']
    assert (pair.connector.in_channels, pair.connector.out_channels) == (512,
                                                                         192)
    x = torch.rand(2, 3, 64, 64)
    with model.student_recorder.record() as s:
        model.student(x)
    t = model.teacher_features(x)['backbone.layers.11']
    t_map = t[:, 1:].transpose(1, 2).reshape(2, 192, 4, 4)
    s_map = pair.connector(s['backbone.layer4'], size=(4, 4))
    assert s_map.shape == t_map.shape == (2, 192, 4, 4)
    torch.testing.assert_close(
        pair(s['backbone.layer4'], t), pair.loss(s_map, t_map))
    data = dict(
        inputs=x * 255,
        data_samples=[DataSample().set_gt_label(i) for i in (0, 1)])
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    log = model.train_step(data, optim)
    assert torch.isfinite(log['loss_distill_tokens'])
    assert log['loss_distill_tokens'] > 0
