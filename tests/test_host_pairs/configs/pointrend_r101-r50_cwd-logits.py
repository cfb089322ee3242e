# yapf: disable
# the last head refines points: the logit map is decode_head.0's, resolved
_base_ = ['mmseg::point_rend/pointrend_r50_4xb2-80k_cityscapes-512x1024.py',
          'mmkd_channel::_base_/distill/cwd_seg_logits.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmseg::point_rend/pointrend_r101_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
             distill=_base_.distill)
