# OFD (Heo et al., ICCV 2019) between mmseg backbones (PSPNet, DeepLabV3,
# ... with ResNetV1c-D8 of any depth, e.g. teacher R101-D8 -> student
# R18-D8) at the pre-ReLU end of all four stages (strides 4, 8, 8, 8 with
# the D8 dilations). `backbone.ofd_stage(i)` is resolved per model when the
# distiller is built (`mmkd_channel.models.ofd_stage_paths`): the input of
# the last call of the last block's shared `relu` (bn3 / bn2 + identity);
# MarginReLU takes its margin from that block's last BN; ConvBNConnector
# (1x1 conv + BN) gets its channels from the models.
# loss_weight = 1/2**(n-i-1) (stage i of n=4) / 10000. The authors' scale
# for segmentation is not given in papers.md; this keeps their ImageNet
# factor.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
# (stage counted from the deepest, loss_weight); the leading `__` keeps
# this helper out of the final config.
__stages = [(-4, 1.25e-5), (-3, 2.5e-5), (-2, 5e-5), (-1, 1e-4)]
distill = {
    f'stage{i + 1}':
    dict(
        student=f'backbone.ofd_stage({s})',  # teacher: the same
        connector=dict(type='ConvBNConnector'),
        teacher_connector=dict(type='MarginReLU'),
        loss=dict(type='PartialL2Loss', loss_weight=w))
    for i, (s, w) in enumerate(__stages)
}
