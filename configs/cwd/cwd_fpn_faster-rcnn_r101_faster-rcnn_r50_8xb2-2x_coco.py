_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',  # student baseline
    '../_base_/distill/cwd_fpn.py',  # preset: CWD on all FPN levels
]
# yapf: disable (keep the checkpoint URL on one line)
model = dict(
    _delete_=True,
    type='mmkd_channel.FeatureDistiller',
    student=_base_.model,
    teacher='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_2x_coco/faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth',  # noqa: E501
    distill=_base_.distill)
