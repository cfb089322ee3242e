"""Config edits the benchmark tasks share: a short cosine schedule, and a
shipped preset fitted to a smaller pair (connector widths, OFD's stage
ends) by probing the models on a dummy input."""
import copy
from typing import Dict, Optional, Sequence

from mmengine.config import Config, ConfigDict


def set_schedule(cfg: Config,
                 epochs: int,
                 lr: float,
                 warmup_epochs: int = 1,
                 checkpoint: bool = False,
                 log_interval: int = 10,
                 clip_grad: Optional[dict] = None,
                 weight_decay: Optional[float] = None) -> None:
    """Cosine schedule with a linear warm-up over ``epochs`` epochs.

    The host's optimizer type and momentum are kept, and its weight decay
    unless ``weight_decay`` is given; the learning rate changes. One
    validation, at the end.

    Args:
        cfg (Config): The config, modified in place.
        epochs (int): Training epochs.
        lr (float): Peak learning rate.
        warmup_epochs (int): Epochs of linear warm-up from ``lr / 10``.
        checkpoint (bool): Save the final checkpoint (teachers need it).
        log_interval (int): Iterations between log lines.
        clip_grad (dict, optional): Gradient clipping (else none).
        weight_decay (float, optional): Replaces the host's weight decay.
    """
    cfg.optim_wrapper.optimizer.lr = lr
    if weight_decay is not None:
        cfg.optim_wrapper.optimizer.weight_decay = weight_decay
    cfg.optim_wrapper.pop('clip_grad', None)
    if clip_grad:
        cfg.optim_wrapper.clip_grad = clip_grad
    warmup_epochs = min(warmup_epochs, max(epochs - 1, 0))
    scheds = []
    if warmup_epochs:
        scheds.append(
            dict(
                type='LinearLR',
                start_factor=0.1,
                by_epoch=True,
                begin=0,
                end=warmup_epochs,
                convert_to_iter_based=True))
    scheds.append(
        dict(
            type='CosineAnnealingLR',
            by_epoch=True,
            begin=warmup_epochs,
            end=epochs,
            T_max=epochs - warmup_epochs,
            eta_min=0.0,
            convert_to_iter_based=True))
    cfg.param_scheduler = scheds
    cfg.train_cfg = ConfigDict(
        type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=log_interval)
    cfg.log_processor = dict(
        type='LogProcessor', window_size=log_interval, by_epoch=True)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook',
        interval=epochs,
        max_keep_ckpts=1,
        save_last=True) if checkpoint else None
    cfg.pop('auto_scale_lr', None)


def build_model(model_cfg: dict, scope: str):
    """Build a host model dict in ``scope`` (random weights, eval mode)."""
    from mmengine.registry import DefaultScope

    from mmkd_channel.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(copy.deepcopy(model_cfg)).eval()


def probe_channels(model, paths: Sequence[str],
                   input_shape: Sequence[int]) -> Dict[str, int]:
    """Channels of the features a model produces at ``paths``.

    The model runs in ``tensor`` mode on a random input without data
    samples; a host model that needs them (a detector's RPN) fails after
    the backbone and neck, which is all the recorded paths need.

    Args:
        model (nn.Module): A host model.
        paths (Sequence[str]): Module paths as in ``distill``.
        input_shape (tuple): ``(N, C, H, W)`` of the dummy input.

    Returns:
        dict: ``path -> channels`` (dim 1 of the first recorded tensor).
    """
    import torch

    from mmkd_channel.models.distillers.recorder import FeatureRecorder
    from mmkd_channel.models.losses.base import as_tensor_list
    rec = FeatureRecorder(model, list(paths))
    with torch.no_grad(), rec.record() as out:
        try:
            model(torch.rand(*input_shape), None, mode='tensor')
        except Exception:  # past the recorded modules: not needed
            pass
    missing = [p for p in paths if p not in out]
    if missing:
        raise RuntimeError(f'{type(model).__name__}: no output recorded at '
                           f'{missing} on a dummy input')
    return {p: as_tensor_list(out[p])[0].shape[1] for p in paths}


def fit_connector_channels(distill: dict, student, teacher,
                           input_shape: Sequence[int]) -> None:
    """Set ``in_channels``/``out_channels`` of connectors to the models'.

    A shipped preset names the channels of its full-size pair; this sets
    them to those of the benchmark's (smaller) pair, found by running both
    models on a dummy input. Connectors without these keys are untouched.

    Args:
        distill (dict): The config's ``distill`` dict, modified in place.
        student (nn.Module): The student model.
        teacher (nn.Module): The teacher model.
        input_shape (tuple): Dummy input shape.
    """
    s_paths = [spec['student'] for spec in distill.values()]
    t_paths = [
        spec.get('teacher', spec['student']) for spec in distill.values()
    ]
    s_ch = probe_channels(student, s_paths, input_shape)
    t_ch = probe_channels(teacher, t_paths, input_shape)
    for spec in distill.values():
        conn = spec.get('connector')
        if not isinstance(conn, dict):
            continue
        if 'in_channels' in conn:
            conn['in_channels'] = s_ch[spec['student']]
        if 'out_channels' in conn:
            conn['out_channels'] = t_ch[spec.get('teacher', spec['student'])]
        if 'hidden_channels' in conn:
            conn['hidden_channels'] = conn['out_channels']


def retarget_ofd(distill: dict, teacher) -> None:
    """Point OFD's teacher paths at the stage ends of ``teacher``.

    An OFD preset names the pre-ReLU stage ends of its own teacher
    (ResNet-50 ``layer1.2``, ResNet-101 ``layer3.22``); the benchmark's
    teacher has other block counts. Terms are taken as stages 0, 1, ...
    of the last ``len(distill)`` stages, in order.
    """
    from mmkd_channel.models.ofd import ofd_stage_paths
    specs = list(distill.values())
    n = len(specs)
    for i, spec in enumerate(specs):
        spec['teacher'] = ofd_stage_paths(teacher, i - n)[0]


def host_dict(model_cfg: dict) -> dict:
    """A model dict without the ``_scope_`` that inheritance may add."""
    d = model_cfg.to_dict() if hasattr(model_cfg,
                                       'to_dict') else dict(model_cfg)
    d.pop('_scope_', None)
    return d
