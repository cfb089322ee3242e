# yapf: disable
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',  # noqa: E501
          'mmkd_channel::_base_/distill/cwd_seg_logits.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmseg::segformer/segformer_mit-b2_8xb1-160k_cityscapes-1024x1024.py',  # noqa: E501
             distill=_base_.distill)
