"""OFD helpers: margins from a teacher BN and pre-ReLU feature paths.

Heo et al., "A Comprehensive Overhaul of Feature Distillation", ICCV 2019
(https://arxiv.org/abs/1904.01866) distills the pre-ReLU feature at the end
of every stage. In mmpretrain / mmdet / mmseg ResNets one ``relu`` module
is reused inside a block, so that feature is the input of the *last* call
of the last block's ``relu``: ``'backbone.layer4.2.relu:input#-1'``. Its
statistics come from the block's last BN (``bn3`` of a Bottleneck,
``bn2`` of a BasicBlock); for a ``ConvModule`` (conv, BN, activation) it is
``'<module>.activate:input#-1'`` and its ``bn``.
"""
import inspect
import math
import re
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distillers.recorder import get_submodule, parse_path
from .traced_stages import traced_stages

#: Module types treated as "the ReLU after a BN".
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU,
               nn.SiLU, nn.Hardswish, nn.Mish)


def ofd_margin_from_bn(bn: nn.BatchNorm2d) -> Tensor:
    """Per-channel margin ``E[x | x < 0]`` for ``x ~ N(beta, gamma**2)``.

    The output of a BN (before its ReLU) is modelled per channel as
    ``N(beta, gamma**2)``. With ``s = |gamma|`` and ``m = beta``::

        margin = m - s * phi(m / s) / Phi(-m / s)

    (the mean of the normal truncated to ``x < 0``), and ``-3 * s`` where
    ``Phi(-m / s) < 0.001`` (almost no negative values), as in the
    authors' code. A channel with ``gamma == 0`` is the constant ``beta``:
    its margin is ``beta`` if ``beta < 0``, else 0.

    Args:
        bn (nn.BatchNorm2d): The teacher BN that produces the feature (any
            ``_BatchNorm``; without affine parameters gamma=1, beta=0).

    Returns:
        Tensor: ``(num_features,)`` float32 margins on ``bn``'s device.

    Examples:
        >>> import torch
        >>> bn = torch.nn.BatchNorm2d(2)
        >>> with torch.no_grad():
        ...     _ = bn.weight.copy_(torch.tensor([1.0, 1.0]))
        ...     _ = bn.bias.copy_(torch.tensor([0.0, 5.0]))
        >>> ofd_margin_from_bn(bn)  # -sqrt(2 / pi); -3 * 1
        tensor([-0.7979, -3.0000])
    """
    if not isinstance(bn, _BatchNorm):
        raise TypeError('ofd_margin_from_bn expects a BatchNorm layer, got '
                        f'{type(bn).__name__}')
    c = bn.num_features
    weight = bn.weight if bn.weight is not None else torch.ones(c)
    bias = bn.bias if bn.bias is not None else torch.zeros(c)
    s = weight.detach().double().abs()
    m = bias.detach().double().to(s.device)
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    z = m / safe_s
    tail = torch.special.ndtr(-z)  # Phi(-m / s) = P(x < 0)
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    truncated = m - safe_s * pdf / tail.clamp_min(1e-300)
    margin = torch.where(tail < 0.001, -3 * s, truncated)
    margin = torch.where(s > 0, margin, m.clamp(max=0))
    return margin.float()


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, ACTIVATIONS)


def bn_before_feature(model: nn.Module,
                      spec: str,
                      role: str = 'teacher') -> Tuple[str, _BatchNorm]:
    """The BN that produced the (pre-ReLU) feature recorded at ``spec``.

    * ``spec`` names a BN's output: that BN. Beware that a forward hook
      keeps a reference to the output, which in-place operations after
      the BN overwrite (a Bottleneck's ``out += identity`` and in-place
      ReLU turn a recorded ``bn3`` output into the post-ReLU block
      output); prefer the ``:input`` of the activation, which is copied.
    * ``spec`` is the input of an activation (``'...relu:input#-1'``,
      ``'...activate:input'``): the last BN registered as a direct child
      of the module that owns the activation (``bn3`` / ``norm3`` of a
      Bottleneck, ``norm2`` of a BasicBlock, ``bn`` of a ``ConvModule``);
      in an ``nn.Sequential``, the element right before the activation.
      For a residual block the feature is that BN's output plus the
      identity, and its statistics are taken as the BN's, as in the
      authors' code.

    Args:
        model (nn.Module): The host model.
        spec (str): Module path as in ``distill`` (``:input``, ``#k``).
        role (str): ``'teacher'`` or ``'student'``, for messages.

    Returns:
        tuple[str, _BatchNorm]: The BN's dotted path and the module.

    Raises:
        ValueError: naming ``spec`` when no BN precedes the feature.

    Examples:
        >>> from mmpretrain.models import ResNet
        >>> bn_before_feature(ResNet(50), 'layer4.2.relu:input#-1')[0]
        'layer4.2.bn3'
    """
    path, kind, _ = parse_path(spec)
    module = get_submodule(model, path, role, key=f'{role} module path')
    hint = ('OFD distills the pre-ReLU output of a BN: point the path at '
            'the input of the ReLU that follows it, e.g. '
            "'backbone.layer4.2.relu:input#-1'; ofd_stage_paths(model, "
            'stage) gives these paths for ResNets and MobileNetV1.')
    if isinstance(module, _BatchNorm):
        if kind == 'output':
            return path, module
        raise ValueError(f'{role} feature {spec!r} is the input of a '
                         f'BatchNorm, not its output. {hint}')
    if kind == 'input' and _is_activation(module) and path:
        parent_path, _, act_name = path.rpartition('.')
        parent = get_submodule(model, parent_path, role)
        children = list(parent.named_children())
        if isinstance(parent, nn.Sequential):
            # a plain chain: the element right before the activation
            i = [n for n, _ in children].index(act_name)
            bns = children[i - 1:i] if i > 0 else []
        else:  # a block (Bottleneck, ConvModule, ...): its last BN
            bns = children
        bns = [(n, m) for n, m in bns if isinstance(m, _BatchNorm)]
        if bns:
            name = bns[-1][0]
            bn_path = f'{parent_path}.{name}' if parent_path else name
            return bn_path, bns[-1][1]
        where = ('the module right before it in the Sequential '
                 f"{parent_path!r} is not a BatchNorm" if isinstance(
                     parent, nn.Sequential) else
                 f'the module {parent_path!r} that owns this '
                 f'{type(module).__name__} has no BatchNorm child')
        raise ValueError(
            f'{role} feature {spec!r}: {where}, so no BN precedes the '
            f'feature and there is no margin. {hint}')
    if (kind == 'output' and type(module).__name__ in LINEAR_BOTTLENECKS
            and _last_bn(module) is not None):
        # ends with a BN (plus identity), no activation after it
        bn = _last_bn(module)
        return f'{path}.{bn}', module.get_submodule(bn)
    raise ValueError(
        f'{role} feature {spec!r} ({type(module).__name__} {kind}) is not '
        f'the output of a BatchNorm, so no BN precedes it. {hint}')


def _last_activation(block: nn.Module) -> Optional[str]:
    names = [n for n, m in block.named_modules() if n and _is_activation(m)]
    return names[-1] if names else None


#: Backbones whose stages :func:`backbone_stages` knows, for messages.
KNOWN_BACKBONES = (
    'ResNet / ResNetV1c / ResNetV1d / ResNet_CIFAR / ResNeXt / RegNet '
    '(mmpretrain, mmdet, mmseg; any depth), MobileNetV2 (mmpretrain, '
    'mmseg), '
    'mmkd_channel.MobileNetV1, backbones with a `stages` ModuleList '
    '(ConvNeXt), and any backbone whose returned maps a submodule produced '
    '(EfficientNet, MobileNetV3, RepVGG, ...) or that returns one map (Swin)')


def _mobilenet_v2_stages(backbone: nn.Module) -> List[Tuple[str, nn.Module]]:
    """MobileNetV2: the last layer of each stride (2 .. 32).

    mmpretrain's ``layers`` ends with ``conv2`` (1x1 conv to 1280 channels),
    which is not a stage of inverted residuals. mmseg's gives the strides
    apart from ``arch_settings`` and trades the last strides for dilation
    (D8: strides ``(1, 2, 2, 1, 1, 1, 1)``, dilations ``(1, 1, 1, 2, 2, 4,
    4)``); a layer that doubles the dilation starts a stage as a stride 2
    would, so both have the same 5 stages.
    """
    if all(len(a) == 4 for a in backbone.arch_settings):  # mmpretrain
        strides = [s for _, _, _, s in backbone.arch_settings]
    else:  # mmseg: strides and dilations as attributes
        dil = list(
            getattr(backbone, 'dilations', None)
            or [1] * len(backbone.strides))
        strides = [
            s * dil[i] // (dil[i - 1] if i else dil[0])
            for i, s in enumerate(backbone.strides)
        ]
    stages = []
    for i, name in enumerate(backbone.layers[:len(strides)]):
        last_of_stride = i + 1 == len(strides) or strides[i + 1] > 1
        if last_of_stride:
            stages.append((name, getattr(backbone, name)))
    return stages


def _maps_to_map(stage: nn.Module) -> bool:
    """Whether ``stage`` is called with the feature map alone (ConvNeXt's
    ``nn.Sequential``), not with tokens and their grid (Swin's
    ``SwinBlockSequence(x, hw_shape)``, which returns a tuple)."""
    try:
        params = inspect.signature(stage.forward).parameters.values()
    except (TypeError, ValueError):
        return True
    required = [
        p for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                               p.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) <= 1


def backbone_stages(backbone: nn.Module,
                    path: str = 'backbone') -> List[Tuple[str, nn.Module]]:
    """``(relative path, module)`` of each stage of a known backbone.

    Other backbones are run once on a dummy input: their stages are the
    modules that produced the feature maps they return
    (:func:`~.traced_stages.traced_stages`), so ``stage(i)`` indexes the
    backbone's ``out_indices`` there.

    Stages are ordered from the input; counting from the end
    (``stage=-1`` is the deepest) pairs different families: ResNets have 4
    stages (strides 4 .. 32), MobileNetV1 and MobileNetV2 5 (strides 2 ..
    32), so their stages ``-4 .. -1`` are at strides 4, 8, 16, 32.

    Raises:
        ValueError: naming the backbone type and the known families.
    """
    name = type(backbone).__name__
    if hasattr(backbone, 'res_layers'):  # mmpretrain / mmdet / mmseg ResNet
        return [(n, getattr(backbone, n)) for n in backbone.res_layers]
    stage_ends = getattr(backbone, 'stage_ends', None)
    layers = getattr(backbone, 'layers', None)
    if stage_ends is not None and layers is not None:  # MobileNetV1
        return [(f'layers.{i}', layers[i]) for i in stage_ends]
    if name == 'MobileNetV2' and hasattr(backbone, 'arch_settings'):
        return _mobilenet_v2_stages(backbone)
    stages = getattr(backbone, 'stages', None)
    if isinstance(stages, nn.ModuleList) and len(stages) and _maps_to_map(
            stages[0]):  # ConvNeXt (Swin's stages take and give tokens)
        return [(f'stages.{i}', m) for i, m in enumerate(stages)]
    traced = traced_stages(backbone)
    if traced:  # EfficientNet, MobileNetV3, RepVGG, TIMM, ...
        return traced
    raise ValueError(
        f'mmkd_channel does not know the stages of the backbone {name} '
        f'(known: {KNOWN_BACKBONES}), and no single module of it produced '
        'the feature maps it returned on a dummy input (multi-branch '
        'backbones such as HRNet fuse their branches in one call; token '
        'outputs of a ViT: use the preset cwt_vit_tokens_last_stage.py, '
        'which records the last transformer block). Distill a feature '
        "after the backbone instead ('neck' in a detector: cwt_fpn.py / "
        "cwd_fpn.py; 'decode_head.conv_seg' in a segmentor: "
        'cwd_seg_logits.py), or give a module path of the backbone that '
        f'returns one map; its children are {_children(backbone, path)}.')


def _out_indices_hint(backbone: nn.Module, stages: list, path: str) -> str:
    """Why a traced backbone has fewer stages than it builds, and the fix.

    Stages found by running the backbone are the maps it returns, so a
    classifier's backbone with ``out_indices=(3, )`` shows one stage.
    """
    out_indices = getattr(backbone, 'out_indices', None)
    if out_indices is None or len(stages) != len(tuple(out_indices)):
        return ''
    return (f' (the stages of {type(backbone).__name__} are the maps it '
            f'returns, and its out_indices={tuple(out_indices)}: to reach '
            'earlier stages, set out_indices=(0, 1, 2, 3) in the backbone '
            f"config ('{path or 'backbone'}') of that model; mmpretrain's "
            'linear heads classify the last map)')


def _children(module: nn.Module, path: str) -> str:
    """``'a.b', 'a.c', ...``: the direct submodules of ``module`` at
    ``path``, for messages."""
    prefix = f'{path}.' if path else ''
    return ', '.join(f"'{prefix}{n}'" for n, _ in module.named_children())


#: Blocks that end with a BN and no activation (their output is the
#: pre-activation feature).
LINEAR_BOTTLENECKS = ('InvertedResidual', )


def _last_bn(module: nn.Module) -> Optional[str]:
    """The last BN of ``module`` if no activation is registered after it."""
    last = None
    for n, m in module.named_modules():
        if isinstance(m, _BatchNorm):
            last = n
        elif n and _is_activation(m):
            last = None
    return last


def ofd_stage_paths(model: nn.Module,
                    stage: int,
                    backbone: str = 'backbone') -> Tuple[str, str]:
    """Pre-ReLU feature path and BN path at the end of ``stage``.

    Works for the ResNets of mmpretrain, mmdet and mmseg (any depth,
    ``ResNetV1c``/``ResNetV1d``/``ResNet_CIFAR`` included), this project's
    ``MobileNetV1`` (its ``stage_ends``: 5 stages, the first at stride 2)
    and mmpretrain's ``MobileNetV2`` (5 stages at strides 2 .. 32; its
    blocks end with a linear BN, so the feature is the block output).

    Args:
        model (nn.Module): The host model (or a bare backbone with
            ``backbone=''``).
        stage (int): Stage index, 0-based (negative counts from the end).
        backbone (str): Path of the backbone in ``model``.

    Returns:
        tuple[str, str]: ``(feature path, BN path)``, e.g.
        ``('backbone.layer4.2.relu:input#-1', 'backbone.layer4.2.bn3')``.

    Raises:
        ValueError: for a backbone whose stages are not known, or without
            a BN at the end of the stage.

    Examples:
        >>> from mmpretrain.models import ResNet
        >>> ofd_stage_paths(ResNet(18), -1, backbone='')
        ('layer4.1.relu:input#-1', 'layer4.1.bn2')
    """
    bb = get_submodule(model, backbone, 'model', key='backbone path')
    stages = backbone_stages(bb, backbone)
    if not -len(stages) <= stage < len(stages):
        raise IndexError(f'stage {stage} out of range: '
                         f'{type(bb).__name__} has {len(stages)} stages'
                         f'{_out_indices_hint(bb, stages, backbone)}')
    stage_path, stage_module = stages[stage]
    prefix = f'{backbone}.' if backbone else ''
    if not stage_path:  # only the whole backbone's output is known
        raise ValueError(
            f'OFD needs the pre-ReLU feature inside each stage, and the '
            f'stages of {type(bb).__name__} are not known; give the '
            'pre-ReLU paths in the config directly.')
    children = list(stage_module.named_children())
    if isinstance(stage_module, (nn.Sequential, nn.ModuleList)) and children:
        last_path = f'{stage_path}.{children[-1][0]}'
        if type(children[-1][1]).__name__ in LINEAR_BOTTLENECKS:
            feat = f'{prefix}{last_path}'
            return feat, bn_before_feature(model, feat, 'model')[0]
        if _last_activation(children[-1][1]):
            stage_path, stage_module = last_path, children[-1][1]
    act = _last_activation(stage_module)
    if act is None:
        raise ValueError(f'no activation in {prefix}{stage_path} of '
                         f'{type(bb).__name__}; OFD needs a BN followed by '
                         'an activation: give the pre-ReLU path in the '
                         'config directly.')
    feat = f'{prefix}{stage_path}.{act}:input#-1'
    return feat, bn_before_feature(model, feat, 'model')[0]


_STAGE_SPEC = re.compile(r'(?:(.*)\.)?(stage|ofd_stage)\((-?\d+)\)')


def resolve_stage_path(model: nn.Module, spec: str) -> str:
    """Turn ``'backbone.stage(-1)'`` / ``'backbone.ofd_stage(-1)'`` into a
    module path of ``model``; other paths are returned unchanged.

    * ``<backbone>.stage(i)``: the output of stage ``i`` of the backbone
      (``layer4`` of a ResNet, ``stages.3`` of a ConvNeXt, see
      :func:`backbone_stages`); negative ``i`` counts from the deepest.
    * ``<backbone>.ofd_stage(i)``: the pre-ReLU feature at the end of
      stage ``i`` (:func:`ofd_stage_paths`).

    Presets use these so that one preset fits every depth and family.

    Examples:
        >>> from torch import nn
        >>> from mmpretrain.models import ResNet
        >>> model = nn.Module()
        >>> model.backbone = ResNet(18)
        >>> resolve_stage_path(model, 'backbone.stage(-1)')
        'backbone.layer4'
        >>> resolve_stage_path(model, 'backbone.ofd_stage(0)')
        'backbone.layer1.1.relu:input#-1'
    """
    m = _STAGE_SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        return spec
    backbone, kind, index = m.group(1) or '', m.group(2), int(m.group(3))
    if kind == 'ofd_stage':
        return ofd_stage_paths(model, index, backbone)[0]
    bb = get_submodule(model, backbone, 'model', key='backbone path')
    stages = backbone_stages(bb, backbone)
    if not -len(stages) <= index < len(stages):
        raise IndexError(f'stage({index}) out of range: '
                         f'{type(bb).__name__} has {len(stages)} stages'
                         f'{_out_indices_hint(bb, stages, backbone)}')
    return '.'.join(p for p in (backbone, stages[index][0]) if p)


def ofd_stage_weights(num_stages: int) -> List[float]:
    """OFD's stage weights ``1 / 2**(n - i - 1)``, ``i = 0 .. n-1``.

    Examples:
        >>> ofd_stage_weights(4)
        [0.125, 0.25, 0.5, 1.0]
    """
    return [1.0 / 2**(num_stages - i - 1) for i in range(num_stages)]


__all__ = [
    'ofd_margin_from_bn', 'bn_before_feature', 'ofd_stage_paths',
    'ofd_stage_weights', 'backbone_stages', 'resolve_stage_path'
]
