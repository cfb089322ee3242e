# yapf: disable (keep the lists short and the checkpoint URLs on one line)
# student baseline and the preset: a CNN and a ViT teacher -> CNN stage
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py',
          '../_base_/distill/cwt_cnn_and_vit_teachers_last_stage.py']
# ResNet-18 layer4 (512 ch, 1/32) against ResNet-50's layer4 (2048 ch, 1/32)
# and, upsampled, DeiT-S's last tokens (384 ch, 1/16)
model = dict(
    _delete_=True, type='mmkd_channel.FeatureDistiller', student=_base_.model,
    teachers=dict(
        cnn=dict(config='mmpretrain::resnet/resnet50_8xb32_in1k.py',
                 ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'),  # noqa: E501
        vit=dict(config='mmpretrain::deit/deit-small_4xb256_in1k.py',
                 ckpt='https://download.openmmlab.com/mmclassification/v0/deit/deit-small_pt-4xb256_in1k_20220218-9425b9bb.pth')),  # noqa: E501
    distill=_base_.distill)
# mmpretrain's browse_dataset.py passes `visualizer` to the class as keyword
# arguments: without the `_scope_` key an `mmpretrain::` base adds to it
visualizer = dict(_delete_=True, type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])  # noqa: E501
