# yapf: disable
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::retinanet/retinanet_r101_fpn_1x_coco.py',
             distill=_base_.distill)
