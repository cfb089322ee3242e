_base_ = [
    'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',  # student
    '../_base_/distill/cwt_seg_psp_head.py',  # preset: CWT on the PSP head
]
# yapf: disable (keep the checkpoint URL on one line)
model = dict(
    _delete_=True,
    type='mmkd_channel.FeatureDistiller',
    student=_base_.model,
    teacher='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth',  # noqa: E501
    distill=_base_.distill)
