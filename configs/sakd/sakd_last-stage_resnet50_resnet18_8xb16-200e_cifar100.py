_base_ = [
    'mmpretrain::resnet/resnet50_8xb16_cifar100.py',  # data and schedule
    '../_base_/distill/sakd_cifar_resnet_last_stage.py',  # preset: SAKD
]
# Student: ResNet-18 on CIFAR-100, i.e. the baseline's model with depth 18
# (mmpretrain's resnet18_8xb16_cifar10 model with 100 classes; mmpretrain
# ships no ResNet-18 CIFAR-100 config). `__` keeps it out of the config.
__student = _base_.model
__student.backbone.depth, __student.head.in_channels = 18, 512
# yapf: disable (keep the checkpoint URL on one line)
model = dict(
    _delete_=True,
    type='mmkd_channel.FeatureDistiller',
    student=__student,
    teacher='mmpretrain::resnet/resnet50_8xb16_cifar100.py',
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_b16x8_cifar100_20210528-67b58a1b.pth',  # noqa: E501
    distill=_base_.distill)
# mmpretrain's browse_dataset.py passes `visualizer` to the class as keyword
# arguments: without the `_scope_` key an `mmpretrain::` base adds to it
visualizer = dict(_delete_=True, type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])  # noqa: E501
