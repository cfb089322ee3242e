# The user's own configs: the student as `_base_`, the teacher by a path
# relative to this file (not to the working directory).
# yapf: disable
_base_ = ['./user/faster-rcnn_r50_my-anchors.py',
          'mmkd_channel::_base_/distill/cwt_fpn.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='./user/faster-rcnn_r101_my-teacher.py',
             distill=_base_.distill)
