# CWT on the last stage of an mmpretrain classifier pair: `backbone` returns
# the stages in its out_indices, the last one by default (MobileNetV1
# stage 4: 1024 ch at 1/32; ResNet-50 layer4: 2048 ch at 1/32).
# loss_weight is a heuristic: mean L2 to a post-ReLU teacher feature starts
# near E[t^2] ~ 1, so 5.0 puts it at the order of the task loss
# (CE ln(1000) ~ 6.9 at the start). Tune it: alpha is CWT's only
# hyper-parameter.
# No custom_imports here: the MobileNetV1 baseline already has it (bases may
# not both define it). With another host config, add
# custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    last_stage=dict(
        student='backbone',  # teacher defaults to the same path
        connector=dict(
            type='ChannelWiseTransform', in_channels=1024, out_channels=2048),
        loss=dict(type='FeatureL2Loss', loss_weight=5.0)))
