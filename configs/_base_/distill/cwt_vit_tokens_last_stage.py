# CWT from the tokens of a transformer teacher to the last stage of a CNN
# student (mmpretrain classifiers). The teacher's last block of a 12-block
# ViT / DeiT (S and B; ViT-L: 'backbone.layers.23') gives (N, 1 + H*W, C)
# tokens (DeiT-distilled: 2 leading tokens); TokensToMap drops the leading
# tokens (counted by the model) and lays the patches out on the grid the
# patch embedding produced, e.g. 14x14 at 224 px (stride 16).
# A CNN's last stage is at stride 32 (7x7), coarser than the teacher, so the
# student's CWT first upsamples it bilinearly to the teacher's grid.
# Set `student` (the CNN's last stage) and the connector widths in the
# config: in_channels = student channels, out_channels = teacher embed dims.
# loss_weight as in cwt_cls_last_stage.py (a heuristic; tune it).
# The config needs data_preprocessor = dict(
# type='mmpretrain.ClsDataPreprocessor'): mmpretrain keeps the preprocessor
# outside the model dict and the distiller needs its type (a preset cannot
# set it: the student's base config already defines the key).
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    last_stage=dict(
        student='backbone',
        teacher='backbone.layers.11',
        connector=dict(
            type='ChannelWiseTransform',
            in_channels=512,
            out_channels=384,
            align='bilinear'),
        teacher_connector=dict(type='TokensToMap'),
        loss=dict(type='FeatureL2Loss', loss_weight=5.0)))
