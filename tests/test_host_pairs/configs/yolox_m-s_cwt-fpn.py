# yapf: disable
_base_ = ['mmdet::yolox/yolox_s_8xb8-300e_coco.py',
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::yolox/yolox_m_8xb8-300e_coco.py',
             distill=_base_.distill)
