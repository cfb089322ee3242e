"""A toy task for fast Runner, DDP, resume and fault tests.

Imported by the tests and, in subprocesses, through ``custom_imports``
(``tests/test_tools`` on ``PYTHONPATH``). Everything is registered in
MMEngine's root registries under ``MMKDToy*`` names, so any scope finds it.
"""
import json
import os
import os.path as osp
import signal
import sys
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset

from mmkd_channel.models.losses import FeatureL2Loss

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))


def _mmdet_train_py() -> str:
    """mmdet's own tools/train.py, shipped in its wheel's .mim folder."""
    import importlib.util
    spec = importlib.util.find_spec('mmdet')
    return osp.join(osp.dirname(spec.origin), '.mim', 'tools', 'train.py')


MMDET_TRAIN = _mmdet_train_py()


@DATASETS.register_module()
class MMKDToyDataset(Dataset):
    """``num`` images of ``num_classes`` colour-coded classes.

    With ``augment`` each item is flipped with NumPy's global generator and
    gets torch noise, like a real pipeline drawing random numbers.
    """

    def __init__(self,
                 num: int = 8,
                 size: int = 16,
                 num_classes: int = 3,
                 seed: int = 0,
                 augment: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.labels = [i % num_classes for i in range(num)]
        self.images = []
        for label in self.labels:
            img = rng.normal(0, 0.3, (3, size, size))
            img[label % 3] += 1.0
            img[:, :size // 2] *= 1 + label
            self.images.append(torch.as_tensor(img, dtype=torch.float32))
        self.augment = augment
        self.metainfo = dict(
            classes=tuple(f'c{i}' for i in range(num_classes)))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict:
        img = self.images[idx]
        if self.augment:
            if np.random.rand() < 0.5:
                img = img.flip(-1)
            img = img + 0.05 * torch.randn_like(img)
        return dict(inputs=img, data_samples=self.labels[idx])


@MODELS.register_module()
class MMKDToyNet(BaseModel):
    """conv-[BN]-relu x2, a 1x1 ``neck``, a linear ``head``.

    ``bn``: False (no norm), True (BN) or ``'sync'`` (SyncBN).
    """

    def __init__(self,
                 width: int = 8,
                 num_classes: int = 3,
                 bn=False,
                 data_preprocessor=None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if bn == 'sync':
            norm = nn.SyncBatchNorm
        elif bn:
            norm = nn.BatchNorm2d
        else:

            def norm(c):
                return nn.Identity()

        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), norm(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), norm(width),
            nn.ReLU())
        self.neck = nn.Conv2d(width, width, 1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feat = self.neck(self.backbone(inputs))
        logits = self.head(feat.mean((2, 3)))
        if mode == 'loss':
            labels = torch.as_tensor(data_samples, dtype=torch.long)
            return dict(loss_cls=F.cross_entropy(logits, labels))
        if mode == 'predict':
            return logits.argmax(1)
        return logits


@METRICS.register_module()
class MMKDToyAccuracy(BaseMetric):
    """Top-1 accuracy (%) of :class:`MMKDToyNet` predictions."""

    def process(self, data_batch, data_samples) -> None:
        labels = data_batch['data_samples']
        for pred, label in zip(data_samples, labels):
            self.results.append(int(int(pred) == int(label)))

    def compute_metrics(self, results: list) -> dict:
        return dict(accuracy=100.0 * sum(results) / max(len(results), 1))


@MODELS.register_module()
class MMKDToyNaNLoss(FeatureL2Loss):
    """``FeatureL2Loss`` that returns ``value`` on training calls
    ``nan_from`` .. ``nan_until`` (1-based, inclusive; the build-time
    check, run under ``no_grad``, does not count), on rank ``rank`` only
    if given."""

    def __init__(self,
                 nan_from: int = 3,
                 nan_until: Optional[int] = None,
                 value: float = float('nan'),
                 loss_weight: float = 1.0,
                 rank: Optional[int] = None) -> None:
        super().__init__(loss_weight)
        self.rank = rank
        self.nan_from = nan_from
        self.nan_until = nan_until
        self.value = value
        self.calls = 0

    def forward(self, student_feat, teacher_feat):
        loss = super().forward(student_feat, teacher_feat)
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            bad = self.calls >= self.nan_from and (
                self.nan_until is None or self.calls <= self.nan_until)
            if bad and self.rank in (None, get_rank()):
                loss = loss * self.value
        return loss


class _NaNGrad(torch.autograd.Function):
    """Identity forward, NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float('nan'))


@MODELS.register_module()
class MMKDToyNaNGradLoss(FeatureL2Loss):
    """``FeatureL2Loss`` whose value stays finite but whose gradient is NaN
    on training calls ``nan_from`` .. ``nan_until`` (1-based, inclusive)."""

    def __init__(self,
                 nan_from: int = 3,
                 nan_until: Optional[int] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.nan_from = nan_from
        self.nan_until = nan_until
        self.calls = 0

    def forward(self, student_feat, teacher_feat):
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls >= self.nan_from and (self.nan_until is None or
                                                self.calls <= self.nan_until):
                student_feat = _NaNGrad.apply(student_feat)
        return super().forward(student_feat, teacher_feat)


@HOOKS.register_module()
class MMKDToyRankDumpHook(Hook):
    """Dump per-rank losses, DDP facts and final weights to the work dir.

    ``state_ranks``: ranks that also save their state dict.
    """

    priority = 'LOWEST'

    def __init__(self, state_ranks=(0, 1)) -> None:
        self.losses = []
        self.distill_losses = []
        self.state_ranks = tuple(state_ranks)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.losses.append(float(outputs['loss'].detach()))
        distill = outputs.get('loss_distill_neck')
        if distill is not None:
            self.distill_losses.append(float(distill.detach()))

    def after_run(self, runner) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = runner.model
        inner = getattr(model, 'module', model)
        rank = get_rank()
        teacher_ids = {id(p) for p in inner.teacher.parameters()}
        info = dict(
            rank=rank,
            wrapper=type(model).__name__,
            is_ddp=isinstance(model, DDP),
            device_ids=getattr(model, 'device_ids', None),
            ddp_params=[n for n, _ in model.named_parameters()],
            ddp_has_teacher_param=any(
                id(p) in teacher_ids for p in model.parameters()),
            teacher_requires_grad=any(p.requires_grad
                                      for p in inner.teacher.parameters()),
            num_teacher_params=len(teacher_ids),
            losses=self.losses,
            distill_losses=self.distill_losses,
            skipped_steps=float(
                runner.message_hub.get_scalar('train/skipped_steps').current(
                ) if 'train/skipped_steps' in
                runner.message_hub.log_scalars else 0),
            backend=(torch.distributed.get_backend()
                     if torch.distributed.is_initialized() else None),
            world_size=runner.world_size,
            sync_bn=[
                type(m).__name__ for m in inner.modules()
                if 'SyncBatchNorm' in type(m).__name__
            ])
        with open(osp.join(runner.work_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(info, f)
        if rank in self.state_ranks:
            torch.save(inner.state_dict(),
                       osp.join(runner.work_dir, f'rank{rank}_state.pth'))


@HOOKS.register_module()
class MMKDToyKillHook(Hook):
    """SIGKILL this process right after the checkpoint of ``after_epoch``
    or ``after_iter`` (1-based) was written (runs after ``CheckpointHook``).
    """

    priority = 'LOWEST'

    def __init__(self,
                 after_epoch: Optional[int] = 1,
                 after_iter: Optional[int] = None) -> None:
        self.after_epoch = None if after_iter is not None else after_epoch
        self.after_iter = after_iter

    @staticmethod
    def _kill() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def after_train_epoch(self, runner) -> None:
        if self.after_epoch is not None and \
                runner.epoch + 1 == self.after_epoch:
            self._kill()

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        if self.after_iter is not None and runner.iter + 1 == self.after_iter:
            self._kill()


def toy_distill_model(bn=False, loss: Optional[dict] = None, **kwargs) -> dict:
    """A FeatureDistiller dict: width-8 student, width-16 teacher."""
    model = dict(
        type='mmkd_channel.FeatureDistiller',
        student=dict(type='MMKDToyNet', width=8, bn=bn),
        teacher=dict(type='MMKDToyNet', width=16, bn=bn),
        distill=dict(
            neck=dict(
                student='neck',
                connector=dict(
                    type='ChannelWiseTransform',
                    in_channels=8,
                    out_channels=16),
                loss=loss or dict(type='FeatureL2Loss', loss_weight=1.0))),
        check_input_shape=(1, 3, 16, 16))
    model.update(kwargs)
    return model


def toy_config(work_dir: str,
               max_epochs: int = 2,
               batch_size: int = 2,
               num: int = 8,
               bn=False,
               augment: bool = False,
               shuffle: bool = True,
               lr: float = 0.05,
               custom_hooks: Optional[list] = None,
               val: bool = True,
               **model_kwargs) -> Config:
    """A complete Runner config of the toy distillation task."""
    dataset = dict(type='MMKDToyDataset', num=num, augment=augment)
    loader = dict(
        batch_size=batch_size,
        num_workers=0,
        dataset=dataset,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'))
    cfg = dict(
        custom_imports=dict(
            imports=['mmkd_channel', 'mmkd_toy'], allow_failed_imports=False),
        default_scope='mmengine',
        model=toy_distill_model(bn=bn, **model_kwargs),
        work_dir=work_dir,
        train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=lr, momentum=0.9,
                           weight_decay=1e-4)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], gamma=0.5),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(custom_hooks or []),
        log_processor=dict(window_size=1),
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='INFO')
    if val:
        cfg.update(
            val_dataloader=dict(
                loader,
                dataset=dict(dataset, augment=False),
                sampler=dict(type='DefaultSampler', shuffle=False)),
            val_cfg=dict(),
            val_evaluator=dict(type='MMKDToyAccuracy'))
        cfg.update(
            test_dataloader=cfg['val_dataloader'],
            test_cfg=dict(),
            test_evaluator=cfg['val_evaluator'])
    return Config(cfg)


def subprocess_env() -> dict:
    """Environment for tools run in a subprocess: repo, tests, venv."""
    env = dict(os.environ)
    paths = [REPO, HERE, osp.join(REPO, 'tests')]
    env['PYTHONPATH'] = os.pathsep.join(
        paths + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env['PYTHON'] = sys.executable
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHONUNBUFFERED'] = '1'
    return env


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _DyingFile:
    """A file that SIGKILLs its process after ``limit`` bytes were written
    (the bytes so far are flushed to disk first)."""

    def __init__(self, f, limit: int) -> None:
        self._f = f
        self._left = limit

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) >= self._left:
            self._f.write(data[:self._left])
            self._f.flush()
            os.fsync(self._f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


@HOOKS.register_module()
class MMKDToyCrashSaveHook(Hook):
    """Kill the process in the middle of writing the checkpoint of epoch
    ``at_epoch`` (after ``after_bytes`` bytes reached the disk).

    ``original=True`` first puts MMEngine's own (non-atomic)
    ``save_checkpoint`` back, for a negative control.
    """

    def __init__(self,
                 at_epoch: int = 2,
                 after_bytes: int = 4096,
                 original: bool = False) -> None:
        self.at_epoch = at_epoch
        self.after_bytes = after_bytes
        self.original = original

    def before_run(self, runner) -> None:
        if self.original:
            import mmengine.runner as mmengine_runner
            from mmengine.runner import checkpoint as ckpt_module
            from mmengine.runner import runner as runner_module

            from mmkd_channel.utils.checkpoint import _ORIGINAL_SAVE_CHECKPOINT
            for module in (ckpt_module, runner_module, mmengine_runner):
                module.save_checkpoint = _ORIGINAL_SAVE_CHECKPOINT

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if runner.epoch + 1 != self.at_epoch:
            return
        import builtins
        real_open = builtins.open
        limit = self.after_bytes

        def dying_open(file, mode='r', *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            writing = 'w' in mode or 'x' in mode
            if writing and str(file).endswith(('.pth', '.tmp')):
                return _DyingFile(f, limit)
            return f

        builtins.open = dying_open
