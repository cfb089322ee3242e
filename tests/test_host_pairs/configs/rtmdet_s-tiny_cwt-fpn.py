# yapf: disable
_base_ = ['mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py',
             distill=_base_.distill)
