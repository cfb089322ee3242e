"""The CPU (gloo) distributed path, in one process (world size 1)."""

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmkd_toy import toy_distill_model

from mmkd_channel.utils import CPUDistributedDataParallel
from mmkd_channel.utils import dist as kd_dist
from mmkd_channel.utils import init_cpu_dist, setup_launcher


def test_launcher_errors(monkeypatch):
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(KeyError, match='torchrun'):
        init_cpu_dist('pytorch')
    with pytest.raises(ValueError, match='nccl backend needs CUDA'):
        init_cpu_dist('pytorch', backend='nccl')
    with pytest.raises(ValueError, match='invalid launcher'):
        init_cpu_dist('torchrun')
    with pytest.raises(ValueError, match='invalid launcher'):
        setup_launcher(Config(dict()), 'srun')


def test_slurm_master_address_without_scontrol(monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    assert kd_dist._first_slurm_host('node7,node8') == 'node7'
    with pytest.raises(KeyError, match='MASTER_ADDR'):
        kd_dist._first_slurm_host('node[1-4]')


def test_none_launcher_changes_nothing():
    cfg = Config(dict(model=dict(type='X')))
    setup_launcher(cfg, 'none')
    assert cfg.launcher == 'none' and 'model_wrapper_cfg' not in cfg
    assert not dist.is_initialized()


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU path only')
def test_setup_launcher_on_cpu(torchrun_env):
    cfg = Config(
        dict(
            env_cfg=dict(dist_cfg=dict(backend='nccl')),
            sync_bn='torch',
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel',
                find_unused_parameters=True)))
    setup_launcher(cfg, 'pytorch')
    assert dist.is_initialized() and dist.get_backend() == 'gloo'
    assert cfg.launcher == 'pytorch'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.sync_bn is None
    assert cfg.model_wrapper_cfg == dict(
        type='CPUDistributedDataParallel', find_unused_parameters=True)


def test_cpu_ddp_reverts_sync_bn_and_keeps_recording(torchrun_env):
    from mmkd_channel.registry import MODELS
    init_cpu_dist('pytorch')
    # distil the SyncBN layer itself: the recorder must follow the swap
    model = MODELS.build(
        toy_distill_model(
            bn='sync',
            distill=dict(
                bn=dict(
                    student='backbone.1',
                    teacher='backbone.1',
                    connector=dict(
                        type='ChannelWiseTransform',
                        in_channels=8,
                        out_channels=16),
                    loss=dict(type='FeatureL2Loss')))))
    ddp = CPUDistributedDataParallel(
        module=model, device_ids=[0], broadcast_buffers=False)
    assert ddp.device_ids is None
    names = [type(m).__name__ for m in ddp.module.modules()]
    assert 'SyncBatchNorm' not in names and '_BatchNormXd' in names
    ddp.train()
    losses = ddp(torch.rand(2, 3, 16, 16), [0, 1], mode='loss')
    assert losses['loss_distill_bn'] > 0
