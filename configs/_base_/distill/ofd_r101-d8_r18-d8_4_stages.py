# OFD (Heo et al., ICCV 2019) between mmseg ResNetV1c-D8 backbones, teacher
# R101-D8 -> student R18-D8 (PSPNet, DeepLabV3, ...), at the pre-ReLU end
# of all four stages (strides 4, 8, 8, 8 with the D8 dilations):
# - teacher: input of the last call of the last Bottleneck's shared `relu`
#   (bn3 + identity); MarginReLU takes its margin from that bn3;
# - student: the same for the last BasicBlock (bn2 + identity);
# - connector: 1x1 conv + BN, 64/128/256/512 -> 256/512/1024/2048 ch.
# loss_weight = 1/2**(n-i-1) (stage i of n=4) / 10000. The authors' scale
# for segmentation is not given in papers.md; this keeps their ImageNet
# factor. `mmkd_channel.models.ofd_stage_paths(model, i)` prints these
# paths for other depths.
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
# (student block, teacher block, Cs, Ct, loss_weight); the leading `__`
# keeps this helper out of the final config.
__stages = [
    ('layer1.1', 'layer1.2', 64, 256, 1.25e-5),
    ('layer2.1', 'layer2.3', 128, 512, 2.5e-5),
    ('layer3.1', 'layer3.22', 256, 1024, 5e-5),
    ('layer4.1', 'layer4.2', 512, 2048, 1e-4),
]
distill = {
    f'stage{i + 1}':
    dict(
        student=f'backbone.{s}.relu:input#-1',
        teacher=f'backbone.{t}.relu:input#-1',
        connector=dict(
            type='ConvBNConnector', in_channels=cs, out_channels=ct),
        teacher_connector=dict(type='MarginReLU'),
        loss=dict(type='PartialL2Loss', loss_weight=w))
    for i, (s, t, cs, ct, w) in enumerate(__stages)
}
