# Two teachers for a CNN classifier student (mmpretrain): a CNN teacher
# named 'cnn' (its last stage) and a ViT / DeiT teacher named 'vit' (the
# tokens of its last block, as in cwt_vit_tokens_last_stage.py). The config
# gives both:
#   model = dict(
#       _delete_=True, type='mmkd_channel.FeatureDistiller',
#       student=_base_.model,
#       teachers=dict(
#           cnn=dict(config='mmpretrain::resnet/resnet50_8xb32_in1k.py',
#                    ckpt='https://...'),
#           vit=dict(config='mmpretrain::deit/deit-small_4xb256_in1k.py',
#                    ckpt='https://...')),
#       distill=_base_.distill)
# Stages are `backbone.stage(-1)`, resolved per model (ResNet: layer4);
# connector widths are filled in when the distiller is built (e.g.
# ResNet-18 512 -> ResNet-50 2048 and -> DeiT-S 384). The student's last
# stage is at stride 32 like the CNN teacher's; the ViT grid is at 16, so
# that term upsamples the student. Each term gets half the single-teacher
# weight of cwt_cls_last_stage.py (a heuristic; tune it).
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    cnn_last_stage=dict(
        teacher_model='cnn',
        student='backbone.stage(-1)',
        connector=dict(type='ChannelWiseTransform'),
        loss=dict(type='FeatureL2Loss', loss_weight=2.5)),
    vit_tokens=dict(
        teacher_model='vit',
        student='backbone.stage(-1)',
        teacher='backbone.layers.11',
        connector=dict(type='ChannelWiseTransform', align='bilinear'),
        teacher_connector=dict(type='TokensToMap'),
        loss=dict(type='FeatureL2Loss', loss_weight=2.5)))
