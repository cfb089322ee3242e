"""``loss_weight='auto'``: a weight chosen for a ratio of the task loss over
the first iterations, then frozen; bad settings fail at build time.

Expected values are computed here from the formula (``target_ratio *
median(task) / median(raw)``) on raw values measured with a twin distiller
built with ``loss_weight=1.0`` from the same random state.
"""
import statistics

import pytest
import torch
from mmengine.registry import MODELS
from toy_models import ToyClassifier, toy_cfg

from mmkd_channel.models import FeatureDistiller


def distiller(loss_weight='auto', calibration=None, student=None, **kwargs):
    torch.manual_seed(0)
    return FeatureDistiller(
        student=student or toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            f=dict(
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss', loss_weight=loss_weight))),
        check_input_shape=(1, 3, 16, 16),
        loss_weight_calibration=calibration,
        **kwargs)


def batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(2, 3, 16, 16, generator=g) * (1 + i), [i % 3, 1])
            for i in range(n)]


def losses_of(model, steps):
    model.train()
    with torch.no_grad():
        return [{
            k: float(v)
            for k, v in model(x, y, mode='loss').items()
        } for x, y in steps]


@pytest.mark.parametrize('stat', ['median', 'mean'])
def test_weight_gives_the_target_ratio_then_freezes(stat):
    target, iters = 0.3, 4
    steps = batches(iters + 2)
    ref = losses_of(distiller(1.0), steps)  # raw terms, same models
    model = distiller(
        calibration=dict(target_ratio=target, iters=iters, statistic=stat))
    got = losses_of(model, steps)
    agg = statistics.median if stat == 'median' else statistics.mean
    task = [r['loss_cls'] for r in ref]
    raw = [r['loss_distill_f'] for r in ref]
    assert [g['loss_cls'] for g in got] == pytest.approx(task, rel=1e-6)
    # during calibration: the estimate over the steps so far, this one too
    for k in range(iters):
        w_k = target * agg(task[:k + 1]) / agg(raw[:k + 1])
        assert got[k]['loss_distill_f'] == pytest.approx(
            w_k * raw[k], rel=1e-5)
    assert got[0]['loss_distill_f'] == pytest.approx(target * task[0], 1e-5)
    weight = target * agg(task[:iters]) / agg(raw[:iters])
    calibration = model.loss_weight_calibration
    assert calibration.frozen and int(calibration.count) == iters
    assert calibration.weights()['f'] == pytest.approx(weight, rel=1e-6)
    weighted = [weight * r for r in raw[:iters]]
    assert agg(weighted) / agg(task[:iters]) == pytest.approx(target, 1e-6)
    # frozen afterwards, although these batches have other loss values
    for k in (iters, iters + 1):
        assert got[k]['loss_distill_f'] == pytest.approx(
            weight * raw[k], rel=1e-5)
    assert calibration.weights()['f'] == pytest.approx(weight, rel=1e-6)
    # the loss module itself returns the raw value
    assert model.distill_pairs['f'].loss.loss_weight == 1.0


def test_eval_mode_does_not_calibrate():
    model = distiller(calibration=dict(iters=2))
    model.eval()
    x, y = batches(1)[0]
    out = model(x, y, mode='loss')
    assert int(model.loss_weight_calibration.count) == 0
    assert float(out['loss_distill_f'].detach()) == 0.0  # no weight yet


def test_state_dict_carries_the_calibration_and_restores_it():
    model = distiller(calibration=dict(iters=2, target_ratio=2.0))
    losses_of(model, batches(3))
    sd = model.state_dict()
    assert int(sd['loss_weight_calibration.count']) == 2
    fresh = distiller(calibration=dict(iters=2, target_ratio=2.0))
    fresh.load_state_dict(sd)
    assert fresh.loss_weight_calibration.frozen
    w = fresh.loss_weight_calibration.weights()['f']
    assert w == model.loss_weight_calibration.weights()['f']
    losses_of(fresh, batches(5)[3:])  # other batches: no recalibration
    assert fresh.loss_weight_calibration.weights()['f'] == w
    assert torch.equal(fresh.loss_weight_calibration.raw,
                       sd['loss_weight_calibration.raw'])


def test_a_checkpoint_with_other_iters_is_not_mixed_in():
    model = distiller(calibration=dict(iters=2))
    losses_of(model, batches(2))
    longer = distiller(calibration=dict(iters=3))
    longer.load_state_dict(model.state_dict(), strict=False)
    calibration = longer.loss_weight_calibration
    assert int(calibration.count) == 0 and not calibration.frozen
    assert float(calibration.weight.sum()) == 0.0


def test_numeric_weights_add_no_state():
    model = distiller(1.0)
    assert model.loss_weight_calibration is None
    assert not any('calibration' in k for k in model.state_dict())


@MODELS.register_module(force=True)
class ToyManyLosses(ToyClassifier):
    """Several task terms, one a list, and a logged non-loss value."""

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = super().forward(inputs, data_samples, mode)
        if mode != 'loss':
            return out
        w = self.head.weight
        return dict(
            loss_cls=out['loss_cls'],
            loss_aux=[w.abs().mean(), 2 * w.pow(2).mean()],
            acc=torch.tensor(50.0))


def test_task_loss_is_the_sum_mmengine_parses():
    model = distiller(
        student=dict(type='ToyManyLosses', width=8),
        calibration=dict(iters=1, target_ratio=1.0))
    x, y = batches(1)[0]
    model.train()
    with torch.no_grad():
        student_losses = model.student(x, y, mode='loss')
        parsed, _ = model.student.parse_losses(student_losses)
    model = distiller(
        student=dict(type='ToyManyLosses', width=8),
        calibration=dict(iters=1, target_ratio=1.0))
    model.train()
    with torch.no_grad():
        out = model(x, y, mode='loss')
    task = float(model.loss_weight_calibration.task[0])
    assert task == pytest.approx(float(parsed), rel=1e-6)
    assert task != pytest.approx(float(student_losses['loss_cls']), 1e-3)
    assert float(out['loss_distill_f']) == pytest.approx(task, rel=1e-5)


def two_teachers(w_weight, n_weight, calibration=None):
    torch.manual_seed(0)
    return FeatureDistiller(
        student=toy_cfg(8),
        teachers=dict(
            wide=dict(config=toy_cfg(16)), narrow=dict(config=toy_cfg(4))),
        distill=dict(
            w=dict(
                teacher_model='wide',
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss', loss_weight=w_weight)),
            n=dict(
                teacher_model='narrow',
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss', loss_weight=n_weight))),
        check_input_shape=(1, 3, 16, 16),
        loss_weight_calibration=calibration)


def test_multi_teacher_terms_are_calibrated_each():
    target, steps = 0.25, batches(3)
    ref = losses_of(two_teachers(1.0, 1.0), steps)
    task = [r['loss_cls'] for r in ref]
    model = two_teachers('auto', 'auto', dict(iters=3, target_ratio=target))
    got = losses_of(model, steps)
    for name in ('w', 'n'):
        raw = [r[f'loss_distill_{name}'] for r in ref]
        assert got[0][f'loss_distill_{name}'] == pytest.approx(
            target * task[0], rel=1e-5)
        assert model.loss_weight_calibration.weights()[name] == \
            pytest.approx(target * statistics.median(task) /
                          statistics.median(raw), rel=1e-6)
    # a numeric weight next to an auto one stays as given
    mixed = two_teachers('auto', 0.5, dict(iters=3, target_ratio=target))
    assert mixed.loss_weight_calibration.names == ['w']
    got = losses_of(mixed, steps)
    assert [g['loss_distill_n'] for g in got
            ] == pytest.approx([0.5 * r['loss_distill_n'] for r in ref],
                               rel=1e-5)


def test_loss_scale_report_does_not_ask_to_change_an_auto_weight():
    model = distiller(calibration=dict(iters=1, target_ratio=1e4))
    losses_of(model, batches(model.loss_scale.warmup))
    assert model.loss_scale.done
    # ratio 1e4 is outside 1e-2..1e2, but the weight was chosen for it
    assert model.loss_scale.report(model.distill_pairs, ['f']) == []
    assert len(model.loss_scale.report(model.distill_pairs)) == 1


@pytest.mark.parametrize('weight,calibration,match', [
    ('atuo', None, r"distill\['f'\]\.loss\.loss_weight='atuo'.*'auto'"),
    ('auto', dict(target_ratio=0), r'target_ratio=0 .*distill\[.f.\].*> 0'),
    ('auto', dict(target_ratio=-1.0), r'target_ratio=-1.0 .*> 0'),
    ('auto', dict(target_ratio=float('nan')), r'target_ratio=nan'),
    ('auto', dict(iters=0), r"iters=0 .*distill\['f'\].*>= 1"),
    ('auto', dict(iters=2.5), r'iters=2.5 .*integer'),
    ('auto', dict(statistic='max'), r"statistic='max' .*median"),
    ('auto', dict(itres=3), r"unknown keys \['itres'\].*distill\['f'\]"),
    (1.0, dict(iters=3), r"no distill entry has loss_weight='auto'"),
])
def test_bad_settings_fail_at_build(weight, calibration, match):
    with pytest.raises((ValueError, KeyError), match=match):
        distiller(weight, calibration)


def test_a_zero_term_gets_the_fallback_weight():
    model = distiller(calibration=dict(iters=1))
    calibration = model.loss_weight_calibration
    losses = dict(loss_cls=torch.tensor(1.0), loss_distill_f=torch.tensor(0.0))
    calibration(losses)
    assert calibration.frozen and calibration.weights()['f'] == 1.0
