from .base import AUTO, ChannelConnector
from .channel_wise_transform import ChannelWiseTransform

__all__ = ['AUTO', 'ChannelConnector', 'ChannelWiseTransform']
from .conv_bn import ConvBNConnector  # noqa: E402
from .margin_relu import MarginReLU  # noqa: E402
from .param_free_uniformizer import ParamFreeUniformizer  # noqa: E402

__all__ += ['ConvBNConnector', 'MarginReLU', 'ParamFreeUniformizer']
