# Hinton KD on the logits of an mmpretrain CIFAR classifier (`head.fc`),
# with the usual CIFAR-100 recipe of the CRD / RepDistiller benchmark:
# tau=4 and 0.9 * KD + 0.1 * cross-entropy (the config sets the student's
# CrossEntropyLoss weight to 0.1).
custom_imports = dict(imports=['mmkd_channel'], allow_failed_imports=False)
distill = dict(
    logits=dict(
        student='head.fc',  # teacher defaults to the same path
        loss=dict(type='KDLoss', tau=4.0, loss_weight=0.9)))
