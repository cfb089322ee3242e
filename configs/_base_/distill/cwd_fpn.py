# CWD on every FPN level of an mmdet detector. With FPNs of equal width no
# connector is needed; for different widths add
# connector=dict(type='ConvBNConnector') (its channels are filled in from
# the models). The loss sums the five levels, each with tau=1 and weight
# 10, as MMRazor's cwd_fpn_frcnn_r101_frcnn_r50 config does with five
# separate terms.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    fpn=dict(
        student='neck',  # the tuple of 5 levels
        loss=dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=10.0)))
