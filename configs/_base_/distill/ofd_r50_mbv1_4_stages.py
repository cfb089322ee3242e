# OFD (Heo et al., ICCV 2019) between mmpretrain classifiers, e.g. a
# ResNet-50 teacher and this project's MobileNetV1 student, at the
# pre-ReLU end of the four deepest stages (strides 4, 8, 16, 32; ResNet
# layer1..layer4 and MobileNetV1 stages 1..4, the features the authors take
# from both networks). `backbone.ofd_stage(i)` is resolved per model when
# the distiller is built (`mmkd_channel.models.ofd_stage_paths`: ResNets
# of any depth, MobileNetV1, MobileNetV2):
# - teacher: input of the last call of the last block's shared `relu`
#   (bn3 + identity); MarginReLU takes its margin from that block's bn3;
# - student: input of the last pointwise ConvModule's activation (its BN
#   output; the recorder clones it before the in-place ReLU);
# - connector: 1x1 conv + BN, channels filled in from the models;
#   PartialL2Loss.
# loss_weight = 1/2**(n-i-1) (stage i of n=4) / 10000 (the authors'
# ImageNet scaling of the batch-averaged sum): 1/8e4, 1/4e4, 1/2e4, 1e-4.
# No custom_imports: the MobileNetV1 baseline has it (bases may not both
# define it); with another host config add it.
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
