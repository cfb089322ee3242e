# yapf: disable
# mmseg's MobileNetV2 (dilated, strides apart from arch_settings)
_base_ = ['mmseg::mobilenet_v2/mobilenet-v2-d8_pspnet_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
          'mmkd_channel::_base_/distill/cwt_seg_last_stage.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
             distill=_base_.distill)
