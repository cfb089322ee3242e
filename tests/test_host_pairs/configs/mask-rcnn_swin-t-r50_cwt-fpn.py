# yapf: disable
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
             distill=_base_.distill)
