# yapf: disable
# EfficientNet has no stage rule: stage(-1) is found by one dummy run
_base_ = ['mmpretrain::efficientnet/efficientnet-b0_8xb32_in1k.py',
          'mmkd_channel::_base_/distill/cwt_cls_last_stage.py']
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmpretrain::regnet/regnetx-400mf_8xb128_in1k.py',
             distill=_base_.distill)
