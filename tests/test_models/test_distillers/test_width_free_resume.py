"""Widths filled in at build time survive a checkpoint and a resume."""
import torch
from mmengine.runner import Runner
from toy_models import toy_cfg, toy_runner_cfg


def config(work_dir, max_epochs, resume=False):
    model = dict(
        type='mmkd_channel.FeatureDistiller',
        student=toy_cfg(8),
        teacher=toy_cfg(16),
        distill=dict(
            f=dict(
                student='neck',
                connector=dict(type='ConvBNConnector'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))
    return toy_runner_cfg(
        model,
        work_dir,
        dict(by_epoch=True, max_epochs=max_epochs),
        resume,
        f'width_free_{max_epochs}_{resume}',
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)))


def test_resume_restores_connector_weights_and_momentum(tmp_path):
    first = Runner(**config(str(tmp_path), 1))
    first.train()
    conn = first.model.distill_pairs['f'].connector
    assert conn.conv.weight.shape == (16, 8, 1, 1)
    saved = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)
    key = 'distill_pairs.f.connector.conv.weight'
    assert torch.equal(saved['state_dict'][key], conn.conv.weight)
    n_params = len(list(first.model.parameters()))
    assert len(saved['optimizer']['state']) == n_params  # momentum of all

    second = Runner(**config(str(tmp_path), 2, resume=True))
    second.load_or_resume()
    conn2 = second.model.distill_pairs['f'].connector
    assert torch.equal(conn2.conv.weight, conn.conv.weight)
    assert torch.equal(conn2.bn.running_mean, conn.bn.running_mean)
    state = second.optim_wrapper.optimizer.state
    assert state[conn2.conv.weight]['momentum_buffer'].shape == (16, 8, 1, 1)
