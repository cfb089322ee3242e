# CWT on the last backbone stage of an mmseg pair (PSPNet, DeepLabV3, ...
# with ResNetV1c-D8 of any depth: R18-D8 512 ch, R101-D8 2048 ch, both at
# 1/8 resolution). `backbone.stage(-1)` is the backbone's last stage
# (`layer4` of a ResNet) and the connector's channels are filled in from
# the models when the distiller is built.
# loss_weight is a heuristic: mean L2 to a post-ReLU teacher feature starts
# near E[t^2] ~ 1, so 3.0 puts it at the order of the task loss
# (CE ln(19) ~ 2.9 plus the 0.4-weighted auxiliary CE). Tune it: alpha is
# CWT's only hyper-parameter.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    last_stage=dict(
        student='backbone.stage(-1)',  # teacher defaults to the same path
        connector=dict(type='ChannelWiseTransform'),
        loss=dict(type='FeatureL2Loss', loss_weight=3.0)))
