# A user's own teacher config, given to the distiller by a path relative
# to the distillation config's folder.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py'
