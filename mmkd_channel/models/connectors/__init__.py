from .channel_wise_transform import ChannelWiseTransform

__all__ = ['ChannelWiseTransform']
