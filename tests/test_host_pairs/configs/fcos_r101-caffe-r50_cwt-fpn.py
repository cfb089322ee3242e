# yapf: disable
_base_ = ['mmdet::fcos/fcos_r50_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py',  # noqa: E501
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::fcos/fcos_r101-caffe_fpn_gn-head-1x_coco.py',
             distill=_base_.distill)
