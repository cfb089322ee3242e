# CWT on every FPN level of an mmdet detector (FPN, PAFPN, ... of any width
# on either side: the distiller fills the connector's in_channels /
# out_channels from the models when it is built). One MLP is shared by the
# five levels, as the RPN head is.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    fpn=dict(
        student='neck',  # teacher defaults to the same path
        connector=dict(type='ChannelWiseTransform'),
        loss=dict(type='FeatureL2Loss', loss_weight=1.0)))
