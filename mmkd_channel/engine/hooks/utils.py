"""Helpers shared by the hooks."""
from torch import nn


def get_distiller(runner, hook: str) -> nn.Module:
    """The :class:`FeatureDistiller` trained by ``runner``, unwrapped.

    Args:
        runner: The MMEngine runner.
        hook (str): Name of the calling hook, for the message.

    Raises:
        TypeError: if the runner's model is not a FeatureDistiller.
    """
    from mmkd_channel.models.distillers import FeatureDistiller
    model = runner.model
    model = getattr(model, 'module', model)  # DDP and other wrappers
    if not isinstance(model, FeatureDistiller):
        raise TypeError(
            f'{hook} works on a FeatureDistiller, but the model of this run '
            f'is {type(model).__name__}. Remove the hook from custom_hooks '
            "or wrap the model: model=dict(type='mmkd_channel."
            "FeatureDistiller', student=..., teacher=..., distill=...).")
    return model
