"""The log compares each distillation term with the task loss, once."""
import torch
from toy_models import toy_cwt_distiller

from mmkd_channel.models.distillers.loss_scale import LossScaleMonitor


class Pair:

    def __init__(self, weight):
        self.loss = type('Loss', (), {'loss_weight': weight})()


def test_ratio_outside_the_range_names_the_loss_weight():
    mon = LossScaleMonitor(warmup=2)
    pairs = {'fpn': Pair(2.0), 'ok': Pair(1.0)}
    for task, fpn in ((1.0, 300.0), (3.0, 500.0)):
        mon.update(
            dict(
                loss_cls=torch.tensor(task),
                loss_distill_fpn=torch.tensor(fpn),
                loss_distill_ok=torch.tensor(task),
                acc=torch.tensor(50.0)), pairs)
    assert mon.done
    warnings = mon.report(pairs)
    assert len(warnings) == 1  # ratio 200 for fpn, 1 for ok
    w = warnings[0]
    assert 'loss_distill_fpn is 200 times the task loss' in w
    assert "distill['fpn'].loss.loss_weight (now 2.0)" in w
    assert 'loss_weight=0.01' in w  # 2.0 / 200


def test_too_small_and_reported_once():
    mon = LossScaleMonitor(warmup=1)
    pairs = {'a': Pair(1.0)}
    mon.update(
        dict(loss_cls=torch.tensor(10.0), loss_distill_a=torch.tensor(0.05)),
        pairs)
    assert mon.done
    assert 'barely matter' in mon.report(pairs)[0]
    before = dict(mon.sums)
    mon.update(dict(loss_cls=torch.tensor(1e6)), pairs)
    assert mon.sums == before


def test_distiller_reports_after_warmup():
    model = toy_cwt_distiller()
    x = torch.rand(2, 3, 16, 16)
    for step in range(model.loss_scale.warmup):
        assert not model.loss_scale.done
        model(x, [0, 1], mode='loss')
    assert model.loss_scale.done and model.loss_scale.steps == 3
