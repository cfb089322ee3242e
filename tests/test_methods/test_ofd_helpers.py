"""OFD: the margin of a teacher BN and the pre-ReLU stage features."""
import numpy as np
import pytest
import torch
from mmpretrain.models import ResNet, ResNet_CIFAR
from torch import nn

from mmkd_channel.models import (FeatureRecorder, MobileNetV1,
                                 bn_before_feature, ofd_margin_from_bn,
                                 ofd_stage_paths, ofd_stage_weights)


def bn_with(gamma, beta):
    bn = nn.BatchNorm2d(len(gamma))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    return bn


def test_margin_matches_monte_carlo():
    # channels with P(x < 0) well above 0.001: E[x | x < 0] by sampling
    gamma = [1.0, 2.0, -0.5, 1.5, 0.3]
    beta = [0.0, -1.0, 0.7, 2.8, -0.2]  # m/s: 0, -0.5, 1.4, 1.87, -0.67
    margin = ofd_margin_from_bn(bn_with(gamma, beta))
    rng = np.random.default_rng(0)
    for c, (g, b) in enumerate(zip(gamma, beta)):
        x = rng.normal(b, abs(g), 1_000_000)
        neg = x[x < 0]
        assert neg.size / x.size > 0.01
        stderr = neg.std() / np.sqrt(neg.size)
        assert abs(margin[c].item() - neg.mean()) < 5 * stderr + 1e-4, c


def test_margin_minus_three_sigma_when_almost_never_negative():
    gamma, beta = [1.0, -2.0, 0.5], [4.0, 7.0, 1.6]  # P(x<0): 3e-5, 2e-4, 7e-4
    margin = ofd_margin_from_bn(bn_with(gamma, beta))
    rng = np.random.default_rng(1)
    for c, (g, b) in enumerate(zip(gamma, beta)):
        x = rng.normal(b, abs(g), 1_000_000)
        assert (x < 0).mean() < 0.001
        assert margin[c].item() == pytest.approx(-3 * abs(g))


def test_margin_dtype_device_and_degenerate_gamma():
    margin = ofd_margin_from_bn(bn_with([0.0, 0.0], [-0.4, 0.3]))
    assert margin.dtype == torch.float32 and margin.shape == (2, )
    assert margin.tolist() == pytest.approx([-0.4, 0.0])
    with pytest.raises(TypeError, match='BatchNorm'):
        ofd_margin_from_bn(nn.Conv2d(1, 1, 1))


def test_stage_weights():
    assert ofd_stage_weights(4) == [1 / 8, 1 / 4, 1 / 2, 1]


def _pre_relu_check(model, feat_path, block_path, x):
    """The recorded feature, through a ReLU, is the block output."""
    rec = FeatureRecorder(model, [feat_path, block_path])
    with rec.record() as out:
        model(x)
    feat = out[feat_path]
    assert (feat < 0).any()  # really before the ReLU
    torch.testing.assert_close(torch.relu(feat), out[block_path])


@pytest.mark.parametrize('depth,blocks,bn', [(50, [2, 3, 5, 2], 'bn3'),
                                             (18, [1, 1, 1, 1], 'bn2')])
def test_mmpretrain_resnet_stage_paths(depth, blocks, bn):
    model = nn.Module()
    model.backbone = ResNet(depth)
    model.backbone.eval()
    for i, last in enumerate(blocks):
        feat, bn_path = ofd_stage_paths(model, i)
        block = f'backbone.layer{i + 1}.{last}'
        assert feat == f'{block}.relu:input#-1'
        assert bn_path == f'{block}.{bn}'
    feat, _ = ofd_stage_paths(model, -1)
    _pre_relu_check(model.backbone, feat[len('backbone.'):],
                    f'layer4.{blocks[-1]}', torch.rand(1, 3, 64, 48))


def test_mmdet_mmseg_and_cifar_resnets():
    from mmdet.models.backbones import ResNet as DetResNet
    from mmseg.models.backbones import ResNetV1c
    paths = ofd_stage_paths(DetResNet(101), 2, backbone='')
    assert paths == ('layer3.22.relu:input#-1', 'layer3.22.bn3')
    seg = ResNetV1c(depth=18, dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1))
    paths = ofd_stage_paths(seg, 3, backbone='')
    assert paths == ('layer4.1.relu:input#-1', 'layer4.1.bn2')
    seg.eval()
    _pre_relu_check(seg, 'layer4.1.relu:input#-1', 'layer4.1',
                    torch.rand(1, 3, 40, 56))
    paths = ofd_stage_paths(ResNet_CIFAR(18), 0, backbone='')
    assert paths[1] == 'layer1.1.bn2'


def test_mobilenet_v1_stage_paths():
    net = MobileNetV1()
    net.eval()
    ends = [0, 2, 4, 10, 12]
    for i, e in enumerate(ends):
        feat, bn = ofd_stage_paths(net, i, backbone='')
        assert feat == f'layers.{e}.pointwise.activate:input#-1'
        assert bn == f'layers.{e}.pointwise.bn'
    _pre_relu_check(net, 'layers.4.pointwise.activate:input#-1', 'layers.4',
                    torch.rand(1, 3, 64, 32))


def test_bn_before_feature_errors_name_the_path():
    model = nn.Module()
    model.backbone = ResNet(18)
    bn_path, _ = bn_before_feature(model, 'backbone.layer2.1.bn2')
    assert bn_path == 'backbone.layer2.1.bn2'
    with pytest.raises(
            ValueError,
            match=r"teacher feature 'backbone.layer2"
            r".1.conv2' \(Conv2d output\) is not the output of a "
            'BatchNorm'):
        bn_before_feature(model, 'backbone.layer2.1.conv2')
    with pytest.raises(
            ValueError,
            match=r"'backbone.layer2.1.relu'.*"
            'not the output of a BatchNorm'):
        bn_before_feature(model, 'backbone.layer2.1.relu')  # post-ReLU
    with pytest.raises(ValueError, match='input of a BatchNorm'):
        bn_before_feature(model, 'backbone.layer2.1.bn2:input')
    chain = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    with pytest.raises(
            ValueError, match=r"'1:input'.*right before it in "
            'the Sequential'):
        bn_before_feature(chain, '1:input')
    with pytest.raises(IndexError, match='4 stages'):
        ofd_stage_paths(model, 4)
    # a backbone without a rule gets its stage from a dummy run; this one
    # has no BN before its activation, which OFD's margin needs
    with pytest.raises(
            ValueError, match='OFD needs a BN followed by an activation'):
        ofd_stage_paths(chain, 0, backbone='')
