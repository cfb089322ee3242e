# CWT on the decode head's feature of an mmseg PSPNet pair: the output of
# `decode_head.bottleneck` (the 3x3 ConvModule after the pyramid pooling,
# right before dropout and conv_seg). Its width is decode_head.channels
# (PSPNet R18-D8: 128, R101-D8: 512); the connector's channels are filled
# in from the models when the distiller is built.
# loss_weight is a heuristic: mean L2 to a post-ReLU teacher feature starts
# near E[t^2] ~ 1, so 3.0 puts it at the order of the task loss
# (CE ln(19) ~ 2.9 plus the 0.4-weighted auxiliary CE). Tune it: alpha is
# CWT's only hyper-parameter.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    decode_head=dict(
        student='decode_head.bottleneck',
        connector=dict(type='ChannelWiseTransform'),
        loss=dict(type='FeatureL2Loss', loss_weight=3.0)))
