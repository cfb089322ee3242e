_base_ = [
    'mmpretrain::resnet/resnet50_8xb16_cifar100.py',  # data and schedule
    '../_base_/distill/kd_cifar_logits.py',  # preset: KD, tau=4, 0.9 * KD
]
# Student: ResNet-18 on CIFAR-100, i.e. the baseline's model with depth 18
# (mmpretrain's resnet18_8xb16_cifar10 model with 100 classes; mmpretrain
# ships no ResNet-18 CIFAR-100 config), cross-entropy weighted 0.1 as in
# the recipe. `__` keeps it out of the config.
__student = _base_.model
__student.backbone.depth, __student.head.in_channels = 18, 512
__student.head.loss.loss_weight = 0.1
# yapf: disable (keep the checkpoint URL on one line)
model = dict(
    _delete_=True, type='mmkd_channel.FeatureDistiller',
    student=__student,
    teacher='mmpretrain::resnet/resnet50_8xb16_cifar100.py',
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_b16x8_cifar100_20210528-67b58a1b.pth',  # noqa: E501
    distill=_base_.distill)
# mmpretrain's browse_dataset.py passes `visualizer` to the class as keyword
# arguments: without the `_scope_` key an `mmpretrain::` base adds to it
visualizer = dict(_delete_=True, type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])  # noqa: E501
