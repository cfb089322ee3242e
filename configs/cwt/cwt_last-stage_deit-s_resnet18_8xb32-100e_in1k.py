# yapf: disable (keep the lists short and the checkpoint URL on one line)
# student baseline and the preset: transformer tokens -> CNN stage
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py',
          '../_base_/distill/cwt_vit_tokens_last_stage.py']
# ResNet-18 layer4 (512 ch, 1/32) upsampled to DeiT-S's 1/16 token grid
model = dict(
    _delete_=True, type='mmkd_channel.FeatureDistiller', student=_base_.model,
    teacher='mmpretrain::deit/deit-small_4xb256_in1k.py',
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/deit/deit-small_pt-4xb256_in1k_20220218-9425b9bb.pth',  # noqa: E501
    distill=_base_.distill)
# mmpretrain's browse_dataset.py passes `visualizer` to the class as keyword
# arguments: without the `_scope_` key an `mmpretrain::` base adds to it
visualizer = dict(_delete_=True, type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])  # noqa: E501
