_base_ = [
    '../mobilenet_v1/mobilenet-v1_8xb32_in1k.py',  # student baseline
    '../_base_/distill/ofd_r50_mbv1_4_stages.py',  # preset: OFD, 4 stages
]
# yapf: disable (keep the checkpoint URL on one line)
model = dict(
    _delete_=True,
    type='mmkd_channel.FeatureDistiller',
    student=_base_.model,
    teacher='mmpretrain::resnet/resnet50_8xb32_in1k.py',
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth',  # noqa: E501
    distill=_base_.distill)
