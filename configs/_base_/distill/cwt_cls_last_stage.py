# CWT on the last backbone stage of an mmpretrain classifier pair, any
# family and depth on either side: `backbone.stage(-1)` is resolved per
# model when the distiller is built (ResNet: layer4, ConvNeXt: stages.3,
# MobileNetV2: layer7, MobileNetV1: its last stage; other families: the
# module that produces the map the backbone returns, e.g. EfficientNet
# layers.6, or the backbone itself for Swin), all at stride 32, and the
# connector's channels are filled in from the models.
# loss_weight is a heuristic: mean L2 to a post-ReLU teacher feature starts
# near E[t^2] ~ 1, so 5.0 puts it at the order of the task loss
# (CE ln(1000) ~ 6.9 at the start). Tune it: alpha is CWT's only
# hyper-parameter.
# No custom_imports here: the MobileNetV1 baseline already has it (bases may
# not both define it). With another host config, add
# custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    last_stage=dict(
        student='backbone.stage(-1)',  # teacher defaults to the same path
        connector=dict(type='ChannelWiseTransform'),
        loss=dict(type='FeatureL2Loss', loss_weight=5.0)))
