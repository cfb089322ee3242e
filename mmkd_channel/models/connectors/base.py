"""Connectors whose channel counts the distiller can fill in."""
from typing import Optional, Union

from torch import nn

#: The value of ``in_channels`` / ``out_channels`` meaning "take it from
#: the models" (as omitting the argument does).
AUTO = 'auto'

Channels = Optional[Union[int, str]]


def _channels(owner: str, name: str, value: Channels) -> Optional[int]:
    if value is None or value == AUTO:
        return None
    if type(value) is not int or value <= 0:
        raise ValueError(
            f'{owner}: {name} must be a positive int, or omitted / '
            f"'{AUTO}' so that the FeatureDistiller takes it from the "
            f'models when it is built; got {name}={value!r}')
    return value


class ChannelConnector(nn.Module):
    """Base of connectors that map ``in_channels`` to ``out_channels``.

    Either count may be omitted (or ``'auto'``): the
    :class:`~mmkd_channel.models.FeatureDistiller` then runs both models on
    a dummy input when it is built and calls :meth:`build` with the
    student feature's channels (in) and the teacher feature's channels
    (out). That happens before the Runner builds the optimizer, so the
    layers are ordinary parameters for the optimizer, checkpoints and
    resume. Subclasses create their layers in :meth:`build_layers`.

    Args:
        in_channels (int | str, optional): Channels of the student feature.
        out_channels (int | str, optional): Channels of the teacher feature.
    """

    def __init__(self,
                 in_channels: Channels = None,
                 out_channels: Channels = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _channels(owner, 'in_channels', in_channels)
        self.out_channels = _channels(owner, 'out_channels', out_channels)
        self.is_built = False

    def maybe_build(self) -> None:
        """Create the layers now if both channel counts are known."""
        if self.in_channels is not None and self.out_channels is not None:
            self.build(self.in_channels, self.out_channels)

    def build(self, in_channels: int, out_channels: int) -> None:
        """Fill the channel counts and create the layers (once).

        Raises:
            ValueError: if a count given in the config differs.
        """
        if self.is_built:
            return
        owner = type(self).__name__
        for name, given, found in (('in_channels', self.in_channels,
                                    in_channels),
                                   ('out_channels', self.out_channels,
                                    out_channels)):
            _channels(owner, name, found)
            if given is not None and given != found:
                raise ValueError(f'{owner}: {name}={given} was given, but '
                                 f'the feature has {found} channels')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.build_layers()
        self.is_built = True

    def build_layers(self) -> None:
        """Create the layers from ``in_channels`` / ``out_channels``."""
        raise NotImplementedError

    def check_input(self, feat) -> None:
        """Raise a clear error on an unbuilt connector or a wrong input."""
        name = type(self).__name__
        if not self.is_built:
            raise RuntimeError(
                f'{name} has in_channels={self.in_channels}, out_channels='
                f'{self.out_channels}: the missing count is filled by the '
                'FeatureDistiller when it is built (from a dry forward '
                'pass). Outside a distiller give both counts or call '
                f'.build(in_channels, out_channels).')
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise ValueError(f'{name} expects (N, {self.in_channels}, H, W) '
                             f'features, got shape {tuple(feat.shape)}')

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, '
                f'out_channels={self.out_channels}')
