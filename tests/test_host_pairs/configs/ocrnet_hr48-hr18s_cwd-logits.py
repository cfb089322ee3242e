# yapf: disable
# a cascade of decode heads: the preset's decode_head.conv_seg is the last
_base_ = ['mmseg::ocrnet/ocrnet_hr18s_4xb2-40k_cityscapes-512x1024.py',
          'mmkd_channel::_base_/distill/cwd_seg_logits.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmseg::ocrnet/ocrnet_hr48_4xb2-40k_cityscapes-512x1024.py',  # noqa: E501
             distill=_base_.distill)
