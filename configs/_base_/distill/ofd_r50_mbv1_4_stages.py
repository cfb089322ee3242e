# OFD (Heo et al., ICCV 2019) from an mmpretrain ResNet-50 teacher to this
# project's MobileNetV1 student, at the pre-ReLU end of four stages of equal
# stride (4, 8, 16, 32): ResNet-50 layer1..layer4 (256, 512, 1024, 2048
# ch) and MobileNetV1 stages 1..4 (layers.2/4/10/12: 128, 256, 512, 1024
# ch), the four features the authors take from both networks.
# - teacher: input of the last call of the last block's shared `relu`
#   (bn3 + identity); MarginReLU takes its margin from that block's bn3;
# - student: input of the last pointwise ConvModule's activation (its BN
#   output; the recorder clones it before the in-place ReLU);
# - connector: 1x1 conv + BN to the teacher's channels; PartialL2Loss.
# loss_weight = 1/2**(n-i-1) (stage i of n=4) / 10000 (the authors'
# ImageNet scaling of the batch-averaged sum): 1/8e4, 1/4e4, 1/2e4, 1e-4.
# No custom_imports: the MobileNetV1 baseline has it (bases may not both
# define it); with another host config add it.
# (student block, teacher block, Cs, Ct, loss_weight); the leading `__`
# keeps this helper out of the final config.
__stages = [
    ('layers.2', 'layer1.2', 128, 256, 1.25e-5),
    ('layers.4', 'layer2.3', 256, 512, 2.5e-5),
    ('layers.10', 'layer3.5', 512, 1024, 5e-5),
    ('layers.12', 'layer4.2', 1024, 2048, 1e-4),
]
distill = {
    f'stage{i + 1}':
    dict(
        student=f'backbone.{s}.pointwise.activate:input',
        teacher=f'backbone.{t}.relu:input#-1',
        connector=dict(
            type='ConvBNConnector', in_channels=cs, out_channels=ct),
        teacher_connector=dict(type='MarginReLU'),
        loss=dict(type='PartialL2Loss', loss_weight=w))
    for i, (s, t, cs, ct, w) in enumerate(__stages)
}
