# yapf: disable
# Swin's stages return tokens and their grid: stage(-1) is its output map
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py',
          'mmkd_channel::_base_/distill/cwt_cls_last_stage.py']
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
             distill=_base_.distill)
