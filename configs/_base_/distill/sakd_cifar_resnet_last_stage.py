# SAKD (Guo et al., Visual Intelligence 2023) on the last stage of a CIFAR
# ResNet pair (`backbone.layer4`: 4x4 positions; 512 ch for R18/R34, 2048
# for R50). Both sides go through the same parameter-free uniformizer
# (pool to 4x4, spatial self-attention without weights, mean over
# channels: a length-16 vector whatever the channel count); the loss is a
# standalone linear classifier on the student vector (cross-entropy with
# the image labels, which the distiller passes to this loss) plus the MSE
# between the student and teacher vectors. Weights are not public: 1 each.
# The classifier's num_classes must be the dataset's (100 for CIFAR-100).
# (The leading `__` keeps the helper out of the final config.)
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
__uniformizer = dict(type='ParamFreeUniformizer', output_size=4)
distill = dict(
    last_stage=dict(
        student='backbone.layer4',  # teacher defaults to the same path
        connector=__uniformizer,
        teacher_connector=__uniformizer,
        loss=dict(
            type='SemanticAwareLoss',
            in_features=16,  # 4 * 4, the uniformizer's output length
            num_classes=100,
            cls_weight=1.0,
            dist_weight=1.0,
            loss_weight=1.0)))
