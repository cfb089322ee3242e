"""Stage paths resolved per model, so presets name no block indices."""
import pytest
import torch
from mmpretrain.models import (ConvNeXt, MobileNetV2, ResNet, ResNetV1c,
                               ResNetV1d)
from torch import nn

from mmkd_channel.models import (FeatureRecorder, bn_before_feature,
                                 ofd_stage_paths)
from mmkd_channel.models.ofd import backbone_stages, resolve_stage_path


def wrap(backbone):
    model = nn.Module()
    model.backbone = backbone
    backbone.eval()  # mmpretrain's ResNet.train() returns None
    return model


@pytest.mark.parametrize('cls', [ResNet, ResNetV1c, ResNetV1d])
@pytest.mark.parametrize('depth', [18, 34, 101])
def test_resnet_family_any_depth(cls, depth):
    model = wrap(cls(depth=depth))
    blocks = dict(
        zip((18, 34, 101), ([2, 2, 2, 2], [3, 4, 6, 3], [3, 4, 23, 3])))[depth]
    bn = 'bn2' if depth < 50 else 'bn3'
    for i, n in enumerate(blocks):
        feat, bn_path = ofd_stage_paths(model, i - 4)
        last = f'backbone.layer{i + 1}.{n - 1}'
        assert (feat, bn_path) == (f'{last}.relu:input#-1', f'{last}.{bn}')
        assert resolve_stage_path(model, f'backbone.ofd_stage({i - 4})') \
            == feat
    assert resolve_stage_path(model, 'backbone.stage(-1)') == 'backbone.layer4'


def test_mobilenet_v2_stage_ends_are_pre_activation():
    model = wrap(MobileNetV2())
    # 5 stages at strides 2, 4, 8, 16, 32: the last layer of each stride
    names = [n for n, _ in backbone_stages(model.backbone)]
    assert names == ['layer1', 'layer2', 'layer3', 'layer5', 'layer7']
    feats = [ofd_stage_paths(model, i)[0] for i in range(-4, 0)]
    rec = FeatureRecorder(model, feats)
    x = torch.rand(1, 3, 64, 64)
    with rec.record() as out:
        model.backbone(x)
    for feat, stride in zip(feats, (4, 8, 16, 32)):
        f = out[feat]
        assert f.shape[-1] == 64 // stride
        assert (f < 0).any()  # a linear bottleneck: no ReLU after it
        path, bn = bn_before_feature(model, feat)
        assert path.endswith('conv.2.bn') and bn.num_features == f.shape[1]


def test_convnext_stage_and_unknown_backbone():
    model = wrap(ConvNeXt(arch='atto'))
    assert resolve_stage_path(model, 'backbone.stage(-1)') == \
        'backbone.stages.3'
    with pytest.raises(ValueError, match='no activation|BN'):
        resolve_stage_path(model, 'backbone.ofd_stage(-1)')
    other = wrap(Doubled())
    with pytest.raises(
            ValueError,
            match=r'does not know the stages of the backbone '
            r'Doubled \(known: ResNet.*no single module'):
        resolve_stage_path(other, 'backbone.stage(0)')
    assert resolve_stage_path(other, 'backbone.conv') == 'backbone.conv'


def test_swin_returns_one_map_so_its_last_stage_is_the_backbone():
    """Swin's stages give tokens and their grid, not a map: the map the
    backbone returns (one, ``out_indices=(3, )``) is recorded instead."""
    from mmpretrain.models import SwinTransformer
    model = wrap(SwinTransformer(arch='tiny', img_size=224))
    assert resolve_stage_path(model, 'backbone.stage(-1)') == 'backbone'
    with pytest.raises(ValueError, match='OFD needs the pre-ReLU feature'):
        resolve_stage_path(model, 'backbone.ofd_stage(-1)')


class Doubled(nn.Module):
    """Returns two maps no module produced (``2 * conv(x)``, ...)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        return (2 * y, 3 * y)


@pytest.mark.parametrize('cfg, last, channels', [
    (dict(type='EfficientNet', arch='b0'), 'layers.6', 1280),
    (dict(type='MobileNetV3', arch='small'), 'layer12', 576),
    (dict(type='RepVGG', arch='A0'), 'stage_4', 1280),
    (dict(type='ShuffleNetV2', out_indices=(1, 2)), 'layers.2', 464),
])
def test_other_families_stage_from_one_run(cfg, last, channels):
    """Families without a rule: the module that produced the backbone's
    last returned map (its ``out_indices``) is ``stage(-1)``, and the
    recorder records exactly that map there."""
    from mmpretrain.registry import MODELS

    # _scope_: an earlier test may leave another default scope current
    model = wrap(MODELS.build(dict(cfg, _scope_='mmpretrain')))
    model.backbone.train()
    path = resolve_stage_path(model, 'backbone.stage(-1)')
    assert path == f'backbone.{last}'
    assert model.backbone.training  # the dry run restored train mode
    rec = FeatureRecorder(model, [path])
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), rec.record() as out:
        outs = model.backbone(x)
    assert out[path].shape[1] == channels
    assert torch.equal(out[path], outs[-1])
    if len(outs) > 1:  # stage(0): the first returned map
        first = resolve_stage_path(model, 'backbone.stage(0)')
        assert first != path and first.startswith('backbone.layers.')


@pytest.mark.parametrize(
    'strides, dilations',
    [((1, 2, 2, 2, 1, 2, 1), (1, 1, 1, 1, 1, 1, 1)),
     ((1, 2, 2, 1, 1, 1, 1), (1, 1, 1, 2, 2, 4, 4))],  # PSPNet / DLv3 D8
    ids=['d32', 'd8'])
def test_mmseg_mobilenet_v2_same_stages(strides, dilations):
    """mmseg's MobileNetV2 keeps its strides outside ``arch_settings`` and
    trades strides for dilation (its D8 configs)."""
    from mmseg.models.backbones import MobileNetV2 as SegMobileNetV2
    model = wrap(SegMobileNetV2(strides=strides, dilations=dilations))
    names = [n for n, _ in backbone_stages(model.backbone)]
    assert names == ['layer1', 'layer2', 'layer3', 'layer5', 'layer7']
    assert resolve_stage_path(model, 'backbone.stage(-1)') == \
        'backbone.layer7'
    feat = ofd_stage_paths(model, -1)[0]
    assert feat.startswith('backbone.layer7.')
