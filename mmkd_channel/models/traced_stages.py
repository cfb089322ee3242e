"""Stages of a backbone family mmkd_channel has no rule for, found by
running it once.

A backbone returns the features of its stages (``out_indices``); the
module that produced each returned tensor is that stage's path: for
EfficientNet ``layers.6``, MobileNetV3 ``layer12``, RepVGG ``stage_4``,
ShuffleNetV2 ``layers.3``, CSPDarkNet ``stages.4``, a TIMM backbone
``timm_model.layer4``. So ``backbone.stage(-1)`` fits these families
without a rule per family. A returned tensor that no single module
produced (a reshape of tokens: Swin, a ViT with ``out_type='featmap'``)
is still the backbone's own output when it returns one map: the stage is
then the whole backbone (path ``''``). Otherwise the caller says that the
stages are not known.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

#: Input sides tried, smallest first: most backbones run at 64 px; ViT-like
#: backbones with a fixed grid and window attention need 224.
TRACE_SIDES = (64, 224)


def _run_recording(backbone: nn.Module,
                   side: int) -> Tuple[object, Dict[str, list]]:
    """Run ``backbone`` once (eval, no grad); every submodule's outputs."""
    calls: Dict[str, list] = {}

    def hook(name: str):
        return lambda mod, args, out: calls.setdefault(name, []).append(out)

    hooks = [
        m.register_forward_hook(hook(name))
        for name, m in backbone.named_modules() if name
    ]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(torch.rand(1, 3, side, side))
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    return out, calls


def _producer(feat: Tensor, calls: Dict[str, list],
              order: Dict[str, int]) -> Optional[str]:
    """The outermost module called once whose output is ``feat``."""
    found = [
        name for name, outs in calls.items()
        if len(outs) == 1 and outs[0] is feat
    ]
    if not found:
        return None
    return min(found, key=lambda n: (n.count('.'), order[n]))


def traced_stages(backbone: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(relative path, module)`` of each feature ``backbone`` returns.

    Returns:
        list: One entry per returned spatial feature map, in the order the
        backbone returns them; ``[('', backbone)]`` if it returns one map
        that no single submodule produced; empty if the backbone does not
        run on a dummy input, returns something else than maps, or returns
        several maps not all produced by a submodule.
    """
    out = None
    for side in TRACE_SIDES:
        try:
            out, calls = _run_recording(backbone, side)
            break
        except Exception:  # noqa: B902 (too small for this backbone)
            continue
    if out is None:
        return []
    feats = out if isinstance(out, (tuple, list)) else (out, )
    modules = dict(backbone.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    maps = [f for f in feats if isinstance(f, Tensor) and f.dim() == 4]
    if not maps or len(maps) != len(feats):
        return []
    names = [_producer(feat, calls, order) for feat in maps]
    if None not in names:
        return [(name, modules[name]) for name in names]
    if len(maps) == 1:  # Swin / ViT featmap: a reshape of tokens
        return [('', backbone)]
    return []
