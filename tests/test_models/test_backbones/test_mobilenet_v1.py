import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmkd_channel.models import MobileNetV1
from mmkd_channel.registry import MODELS

CHANNELS = [64, 128, 256, 512, 1024]


def test_stage_shapes_and_channels():
    net = MobileNetV1(out_indices=range(5))
    outs = net(torch.rand(2, 3, 64, 64))
    shapes = [tuple(o.shape) for o in outs]
    # stage i has stride 2 ** (i + 1)
    assert shapes == [(2, c, 32 // 2**i, 32 // 2**i)
                      for i, c in enumerate(CHANNELS)]
    assert net.out_channels == CHANNELS
    assert len(net.layers) == 13


def test_default_is_last_stage_only_and_built_by_registry():
    net = MODELS.build(dict(type='mmkd_channel.MobileNetV1'))
    outs = net(torch.rand(1, 3, 64, 64))
    assert len(outs) == 1 and outs[0].shape == (1, 1024, 2, 2)


def test_documented_last_bn_of_each_stage():
    net = MobileNetV1(out_indices=range(5))
    modules = dict(net.named_modules())
    for stage, block in enumerate((0, 2, 4, 10, 12)):
        bn = modules[f'layers.{block}.pointwise.bn']
        assert isinstance(bn, _BatchNorm)
        assert bn.num_features == CHANNELS[stage]


@pytest.mark.parametrize('widen_factor', [0.25, 0.5])
def test_widen_factor(widen_factor):
    net = MobileNetV1(widen_factor=widen_factor, out_indices=(0, 4))
    outs = net(torch.rand(2, 3, 32, 32))
    assert outs[0].shape[1] == int(64 * widen_factor)
    assert outs[1].shape[1] == int(1024 * widen_factor)
    assert net.conv1.conv.out_channels == int(32 * widen_factor)


def test_frozen_stages_freeze_params_and_keep_bn_eval():
    net = MobileNetV1(frozen_stages=2)
    net.train()
    frozen = [net.conv1, *net.layers[:3]]  # stem, stage 0, stage 1
    for module in frozen:
        assert not any(p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules()
                   if isinstance(m, _BatchNorm))
    for module in net.layers[3:]:
        assert all(p.requires_grad for p in module.parameters())
        assert module.training
    # the running statistics of frozen BNs do not move in training
    before = net.layers[2].pointwise.bn.running_mean.clone()
    net(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(net.layers[2].pointwise.bn.running_mean, before)


def test_frozen_stage_0_is_the_stem_only():
    net = MobileNetV1(frozen_stages=0)
    assert not any(p.requires_grad for p in net.conv1.parameters())
    assert all(p.requires_grad for p in net.layers.parameters())


def test_norm_eval():
    net = MobileNetV1(norm_eval=True)
    net.train()
    assert all(not m.training for m in net.modules()
               if isinstance(m, _BatchNorm))
    assert net.layers[5].pointwise.conv.training


def test_bad_arguments():
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV1(out_indices=(5, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        MobileNetV1(frozen_stages=6)


def test_parameter_count_of_the_standard_model():
    """1.0x MobileNetV1 with a 1000-class fc has ~4.2M parameters (paper,
    Table 8): count conv weights and BN affine parameters by hand."""
    ch = [32] + [c for c, _ in MobileNetV1.arch]
    expect = 3 * 3 * 3 * 32 + 2 * 32  # stem conv + BN
    for cin, cout in zip(ch[:-1], ch[1:]):
        expect += 9 * cin + 2 * cin  # depthwise 3x3 + BN
        expect += cin * cout + 2 * cout  # pointwise 1x1 + BN
    net = MobileNetV1()
    backbone = sum(p.numel() for p in net.parameters())
    assert backbone == expect
    total = backbone + 1024 * 1000 + 1000
    assert total == pytest.approx(4.2e6, rel=0.02)


def test_init_weights():
    net = MobileNetV1()
    net.init_weights()
    bn = net.layers[0].depthwise.bn
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    w = net.layers[12].pointwise.conv.weight
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (1024 * 1 * 1))
    assert w.std().item() == pytest.approx((2 / 1024)**0.5, rel=0.05)
