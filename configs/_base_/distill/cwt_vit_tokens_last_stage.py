# CWT from the tokens of a transformer teacher to the last stage of a CNN
# student (mmpretrain classifiers). The teacher's last block of a 12-block
# ViT / DeiT (S and B; ViT-L: 'backbone.layers.23') gives (N, 1 + H*W, C)
# tokens (DeiT-distilled: 2 leading tokens); TokensToMap drops the leading
# tokens (counted by the model) and lays the patches out on the grid the
# patch embedding produced, e.g. 14x14 at 224 px (stride 16).
# A CNN's last stage is at stride 32 (7x7), coarser than the teacher, so the
# student's CWT first upsamples it bilinearly to the teacher's grid.
# The student's last stage is `backbone.stage(-1)`, resolved per model
# (ResNet: layer4); the connector's widths are filled in when the distiller
# is built (student channels in, teacher embedding dims out, read after
# TokensToMap). loss_weight as in cwt_cls_last_stage.py (a heuristic).
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    last_stage=dict(
        student='backbone.stage(-1)',
        teacher='backbone.layers.11',
        connector=dict(type='ChannelWiseTransform', align='bilinear'),
        teacher_connector=dict(type='TokensToMap'),
        loss=dict(type='FeatureL2Loss', loss_weight=5.0)))
