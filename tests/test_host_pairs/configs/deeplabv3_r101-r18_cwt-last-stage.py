# yapf: disable
_base_ = ['mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
          'mmkd_channel::_base_/distill/cwt_seg_last_stage.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
             distill=_base_.distill)
