# Hinton KD on the logits of any mmpretrain classifier pair: the output of
# `head`, which is the class scores for every mmpretrain head
# (LinearClsHead, StackedLinearClsHead of MobileNetV3 whose last linear is
# `head.layers.1.fc`, VisionTransformerClsHead of ViT / DeiT whose linear is
# `head.layers.head`, ...). Same number of classes on both sides, so no
# connector. tau=1, weight 1: not from a paper, tune them.
# No custom_imports (bases may not both define it): add
# custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
# to your config unless its student baseline has it.
distill = dict(
    logits=dict(
        student='head',  # teacher defaults to the same path
        loss=dict(type='KDLoss', tau=1.0, loss_weight=1.0)))
