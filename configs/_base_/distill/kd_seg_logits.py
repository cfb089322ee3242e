# Pixel-wise Hinton KD on segmentation logits (`decode_head.conv_seg`,
# same classes and stride on both sides): every pixel is a sample, the KL
# divergence is averaged over N * H * W. tau=1, weight 1: not from a paper,
# tune them.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    logits=dict(
        student='decode_head.conv_seg',  # teacher defaults to the same path
        loss=dict(type='KDLoss', tau=1.0, loss_weight=1.0)))
