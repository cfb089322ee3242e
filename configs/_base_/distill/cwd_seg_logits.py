# CWD on segmentation logits: the output of `decode_head.conv_seg` (N, 19,
# H/8, W/8 for Cityscapes), same classes and stride on both sides, so no
# connector. tau=1, weight 5: MMRazor's PSPNet R101 -> R18 setting (the
# CWD authors also report tau=4, weight 3).
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    logits=dict(
        student='decode_head.conv_seg',  # teacher defaults to the same path
        loss=dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=5.0)))
