_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py',  # student baseline
    '../_base_/distill/cwt_fpn.py',  # preset: CWT + L2 on all FPN levels
]
# yapf: disable (keep the checkpoint URL on one line)
model = dict(
    _delete_=True,
    type='mmkd_channel.FeatureDistiller',
    student=_base_.model,
    teacher='mmdet::mask_rcnn/mask-rcnn_r101_fpn_2x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r101_fpn_2x_coco/mask_rcnn_r101_fpn_2x_coco_bbox_mAP-0.408__segm_mAP-0.366_20200505_071027-14b391c7.pth',  # noqa: E501
    distill=_base_.distill)
