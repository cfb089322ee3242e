# yapf: disable
_base_ = ['mmpretrain::mobilenet_v3/mobilenet-v3-small_8xb128_in1k.py',
          'mmkd_channel::_base_/distill/kd_cls_logits.py']
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmpretrain::resnet/resnet50_8xb32_in1k.py',
             distill=_base_.distill)
