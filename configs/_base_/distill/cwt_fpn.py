# CWT on every FPN level (mmdet two-stage / one-stage detectors with a
# 256-channel FPN). One MLP is shared by the five levels, as the RPN head is.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    fpn=dict(
        student='neck',  # teacher defaults to the same path
        connector=dict(
            type='ChannelWiseTransform', in_channels=256, out_channels=256),
        loss=dict(type='FeatureL2Loss', loss_weight=1.0)))
