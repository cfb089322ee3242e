# CWT on the last backbone stage of an mmseg ResNetV1c-D8 pair: student
# R18-D8 `backbone.layer4` (512 ch) -> teacher R101-D8 `backbone.layer4`
# (2048 ch), both at 1/8 resolution. For other depths set the connector's
# in_channels / out_channels (R18/R34: 512, R50/R101: 2048).
# loss_weight is a heuristic: mean L2 to a post-ReLU teacher feature starts
# near E[t^2] ~ 1, so 3.0 puts it at the order of the task loss
# (CE ln(19) ~ 2.9 plus the 0.4-weighted auxiliary CE). Tune it: alpha is
# CWT's only hyper-parameter.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    last_stage=dict(
        student='backbone.layer4',  # teacher defaults to the same path
        connector=dict(
            type='ChannelWiseTransform', in_channels=512, out_channels=2048),
        loss=dict(type='FeatureL2Loss', loss_weight=3.0)))
