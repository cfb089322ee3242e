"""Connectors under mixed precision: their weights stay fp32, features in
fp16 / bf16 are accepted inside and outside autocast (MMRazor #190: "the
connector's weight is fp32, but the student's outputs are fp16")."""
import pytest
import torch
from mmengine.optim import OptimWrapper
from toy_models import toy_cfg

from mmkd_channel.models import (ChannelWiseTransform, ConvBNConnector,
                                 FeatureDistiller, SpatialAlign, TokensToMap)

CONNECTORS = [
    (ChannelWiseTransform, dict(in_channels=8, out_channels=12)),
    (ConvBNConnector, dict(in_channels=8, out_channels=12)),
]


@pytest.mark.parametrize('cls,kwargs', CONNECTORS)
@pytest.mark.parametrize('align', [None, 'bilinear'])
def test_half_features_outside_autocast(cls, kwargs, align):
    torch.manual_seed(0)
    conn = cls(align=align, **kwargs).eval()
    x = torch.randn(2, 8, 4, 4).bfloat16()
    out = conn(x, size=(8, 8))
    assert out.dtype == torch.float32  # cast up to the fp32 weights
    torch.testing.assert_close(out, conn(x.float(), size=(8, 8)))
    assert all(p.dtype == torch.float32 for p in conn.parameters())


@pytest.mark.parametrize('cls,kwargs', CONNECTORS)
def test_bf16_autocast_trains_fp32_weights(cls, kwargs):
    torch.manual_seed(0)
    conn = cls(**kwargs).train()
    x = torch.randn(2, 8, 4, 4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conn(x.bfloat16())
    assert out.dtype == torch.bfloat16  # autocast computed the convs
    with torch.no_grad():
        ref = conn(x.bfloat16().float())  # fp32, same batch statistics
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)
    out.float().square().mean().backward()
    for p in conn.parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32


def test_weightless_connectors_keep_the_dtype():
    x = torch.randn(1, 17, 6).bfloat16()
    assert TokensToMap()(x).dtype == torch.bfloat16
    y = torch.randn(1, 6, 2, 2).bfloat16()
    out = SpatialAlign('bilinear')(y, size=(4, 4))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 6, 4, 4)


def distiller(connector):
    return FeatureDistiller(
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            neck=dict(
                student='neck',
                connector=connector,
                loss=dict(type='FeatureL2Loss')),
            cwd=dict(
                student='backbone.5',
                connector=dict(
                    type='ConvBNConnector', in_channels=8, out_channels=16),
                loss=dict(type='ChannelWiseDivergence', loss_weight=3.0))),
        check_input_shape=(1, 3, 16, 16))


def batch():
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(2, 3, 16, 16, generator=g), data_samples=[0, 2])


def test_distiller_trains_under_bf16_autocast():
    torch.manual_seed(0)
    model = distiller(
        dict(type='ChannelWiseTransform', in_channels=8, out_channels=16))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    before = {
        k: v.clone()
        for k, v in model.distill_pairs.state_dict().items()
    }
    dtypes = []
    model.student.neck.register_forward_hook(
        lambda m, a, out: dtypes.append(out[0].dtype))
    for _ in range(2):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model(**batch(), mode='loss')
        assert dtypes[-1] == torch.bfloat16  # the student ran in bf16
        for key in ('loss_distill_neck', 'loss_distill_cwd'):
            assert losses[key].dtype == torch.float32
            assert torch.isfinite(losses[key])
        optim.update_params(sum(losses.values()))
    after = model.distill_pairs.state_dict()
    for k, v in after.items():
        assert v.dtype == before[k].dtype, k  # fp32 stays fp32
    assert any(not torch.equal(v, before[k]) for k, v in after.items()
               if v.is_floating_point())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_distiller_trains_under_fp16_amp_optim_wrapper():
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = distiller(
        dict(type='ChannelWiseTransform', in_channels=8,
             out_channels=16)).cuda()
    optim = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        dtype='float16')
    model.train()
    data = batch()
    data['inputs'] = data['inputs'].cuda()
    for _ in range(2):
        log = model.train_step(data, optim)
        assert torch.isfinite(log['loss_distill_neck'])
        assert torch.isfinite(log['loss_distill_cwd'])
    assert all(p.dtype == torch.float32
               for p in model.distill_pairs.parameters())
    # the same features in fp16 outside autocast: cast up, no dtype error
    conn = model.distill_pairs.neck.connector
    out = conn(torch.randn(1, 8, 4, 4, device='cuda').half())
    assert out.dtype == torch.float32
