# yapf: disable (keep the lists short and the checkpoint URL on one line)
# student baseline and the preset: transformer tokens -> CNN stage
_base_ = ['mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
          '../_base_/distill/cwt_vit_tokens_last_stage.py']
# MobileNetV2's last conv (1280 ch at 1/32, what its head pools) upsampled
# to ViT-B's 1/16 token grid; the ViT-B is MAE fine-tuned at 224 px with
# the ImageNet mean / std of the student
__distill = _base_.distill
__distill.last_stage.student = 'backbone.conv2'
model = dict(
    _delete_=True, type='mmkd_channel.FeatureDistiller', student=_base_.model,
    teacher='mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py',
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/vit/vit-base-p16_pt-32xb128-mae_in1k_20220623-4c544545.pth',  # noqa: E501
    distill=__distill)
# mmpretrain's browse_dataset.py passes `visualizer` to the class as keyword
# arguments: without the `_scope_` key an `mmpretrain::` base adds to it
visualizer = dict(_delete_=True, type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])  # noqa: E501
