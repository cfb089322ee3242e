# yapf: disable
_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py',
          'mmkd_channel::_base_/distill/cwd_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::atss/atss_r101_fpn_1x_coco.py',
             distill=_base_.distill)
