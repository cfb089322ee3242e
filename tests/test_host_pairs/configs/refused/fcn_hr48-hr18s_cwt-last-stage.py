# yapf: disable
# HRNet returns four branch maps fused in one call: no stage(-1)
_base_ = ['mmseg::hrnet/fcn_hr18s_4xb2-40k_cityscapes-512x1024.py',
          'mmkd_channel::_base_/distill/cwt_seg_last_stage.py']
model = dict(_delete_=True, type='mmkd_channel.FeatureDistiller',
             student=_base_.model,
             teacher='mmseg::hrnet/fcn_hr48_4xb2-40k_cityscapes-512x1024.py',
             distill=_base_.distill)
