# A user's own student config: mmdet's Faster R-CNN R-50 with other anchor
# ratios (what a user might have changed in their baseline).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
model = dict(
    rpn_head=dict(anchor_generator=dict(ratios=[0.25, 0.5, 1.0, 2.0])))
