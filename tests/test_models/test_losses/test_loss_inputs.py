import pytest
import torch
from mmpretrain.structures import DataSample

from mmkd_channel.models import (FeatureL2Loss, SemanticAwareLoss,
                                 accepts_data_samples, call_loss,
                                 labels_from_data_samples)


def test_only_losses_naming_data_samples_receive_them():
    seen = {}

    class WithKwargs(torch.nn.Module):

        def forward(self, s, t, **kwargs):
            seen.update(kwargs)
            return (s - t).sum()

    assert not accepts_data_samples(FeatureL2Loss())
    assert not accepts_data_samples(WithKwargs())
    assert accepts_data_samples(SemanticAwareLoss(4, 3))
    call_loss(WithKwargs(), torch.ones(1), torch.zeros(1), [1])
    assert seen == {}
    loss = SemanticAwareLoss(4, 3)
    s, t = torch.rand(2, 4), torch.rand(2, 4)
    assert call_loss(loss, s, t, [0, 1]) > call_loss(loss, s, t, None)


def test_labels_from_mmpretrain_samples():
    samples = [DataSample().set_gt_label(3), DataSample().set_gt_label(0)]
    assert labels_from_data_samples(samples).tolist() == [3, 0]
    assert labels_from_data_samples([1, torch.tensor(2)]).tolist() == [1, 2]
    with pytest.raises(
            ValueError, match=r'data_samples\[0\] has no single '
            'class label'):
        labels_from_data_samples([DataSample()])
    soft = DataSample().set_gt_score(torch.tensor([0.3, 0.7]))
    with pytest.raises(ValueError, match='no single class label'):
        labels_from_data_samples([soft])
