# yapf: disable
_base_ = ['mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
          'mmkd_channel::_base_/distill/cwt_cls_last_stage.py']
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
             distill=_base_.distill)
