# yapf: disable
# an AMP, large-scale-jitter baseline (batch padded to a fixed size)
_base_ = ['mmdet::centernet/centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py',  # noqa: E501
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmdet::centernet/centernet-update_r50_fpn_8xb8-amp-lsj-200e_coco.py',  # noqa: E501
             distill=_base_.distill)
