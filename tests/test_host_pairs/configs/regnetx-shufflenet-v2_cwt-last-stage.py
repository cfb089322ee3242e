# yapf: disable
# ShuffleNetV2's stage is found by one dummy run; its PolyLR starts late
_base_ = ['mmpretrain::shufflenet_v2/shufflenet-v2-1x_16xb64_in1k.py',
          'mmkd_channel::_base_/distill/cwt_cls_last_stage.py']
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmpretrain::regnet/regnetx-1.6gf_8xb128_in1k.py',
             distill=_base_.distill)
