"""The distiller fills connector widths from its build-time dry run."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from toy_models import toy_cfg

from mmkd_channel.models import DistillCheckError, FeatureDistiller


def distill(connector=None, **spec):
    spec.setdefault('student', 'neck')
    return dict(
        feat=dict(
            connector=connector or dict(type='ChannelWiseTransform'),
            loss=dict(type='FeatureL2Loss'),
            **spec))


def make(d=None, s=8, t=16, **kwargs):
    kwargs.setdefault('check_input_shape', (1, 3, 16, 16))
    return FeatureDistiller(
        student=toy_cfg(s),
        teacher=toy_cfg(t),
        distill=d or distill(),
        **kwargs)


def batch(n=2):
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(n, 3, 16, 16, generator=g),
        data_samples=[i % 3 for i in range(n)])


@pytest.mark.parametrize('s,t', [(8, 16), (16, 8), (4, 4)])
def test_widths_filled_from_the_models(s, t):
    model = make(s=s, t=t)
    conn = model.distill_pairs['feat'].connector
    assert (conn.in_channels, conn.out_channels) == (s, t)
    assert conn.mlp[0].weight.shape == (t, s, 1, 1)
    assert model._checked


def test_parameters_are_ordinary():
    """Optimizer, state_dict and a fresh distiller's load see them."""
    model = make()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    conn_params = {id(p) for p in model.distill_pairs.parameters()}
    assert conn_params and conn_params <= {
        id(p)
        for g in optim.optimizer.param_groups
        for p in g['params']
    }
    before = copy.deepcopy(model.distill_pairs.state_dict())
    model.train_step(batch(), optim)
    after = model.distill_pairs.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    other = make()
    missing, unexpected = other.load_state_dict(model.state_dict())
    assert not missing and not unexpected
    for k, v in other.distill_pairs.state_dict().items():
        assert torch.equal(v, after[k]), k


def test_same_model_as_explicit_widths():
    """A width-free preset is the same model (and leaves the same random
    state) as the preset with the widths written in."""
    torch.manual_seed(0)
    auto = make()
    next_auto = torch.rand(3)
    torch.manual_seed(0)
    explicit = make(
        distill(
            dict(type='ChannelWiseTransform', in_channels=8, out_channels=16)))
    next_explicit = torch.rand(3)
    sa, se = auto.state_dict(), explicit.state_dict()
    assert sa.keys() == se.keys()
    for k in sa:
        assert torch.equal(sa[k], se[k]), k
    assert torch.equal(next_auto, next_explicit)


def test_one_connector_per_level():
    d = distill([dict(type='ConvBNConnector'), dict(type='ConvBNConnector')])
    model = make(d)
    convs = model.distill_pairs['feat'].connector
    assert [c.conv.weight.shape[:2] for c in convs] == [(16, 8), (16, 8)]
    assert torch.isfinite(model(**batch(), mode='loss')['loss_distill_feat'])


def test_auto_without_the_check_is_an_error_at_build():
    with pytest.raises(DistillCheckError) as info:
        make(check_input_shape=None)
    msg = str(info.value)
    assert "distill['feat'].connector: ChannelWiseTransform" in msg
    assert 'check_input_shape=(1, 3, H, W)' in msg
    assert 'in_channels= and out_channels=' in msg


def test_auto_teacher_connector_needs_widths():
    d = distill(teacher_connector=dict(type='ConvBNConnector'))
    with pytest.raises(
            DistillCheckError,
            match=r"distill\['feat'\].*the teacher_connector "
            'needs explicit'):
        make(d)
