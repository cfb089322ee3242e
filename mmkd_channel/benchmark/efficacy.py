"""Efficacy benchmark: teacher, plain student and distilled students.

Every model is trained with MMEngine's ``Runner`` from a config that is a
*shipped* config plus overrides for the generated data (the same overrides
for the plain and the distilled students), so the numbers measure what
users run. Each run's final config is dumped next to its logs
(``<out_dir>/<task>/<model>/seed<k>/config.py``) and can be re-run with
``tools/train.py``.

The teacher of a task is trained once (seed 0) and shared by every seed
and method, as a model-zoo teacher would be; the students are trained once
per seed with identical schedules. A finished run leaves ``result.json``
in its work dir and is reused by a later call with the same config.
"""
import copy
import hashlib
import json
import math
import os
import os.path as osp
import statistics
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
from mmengine.logging import MMLogger

PLAIN = 'plain'
TEACHER = 'teacher'
ALL_METHODS = ('cwt', 'cwd', 'ofd', 'sakd', 'kd')
LOGGER = 'mmkd_channel.benchmark'


def get_logger(log_file: Optional[str] = None) -> MMLogger:
    """The benchmarks' MMEngine logger (console, and ``log_file`` if given
    when it is first created)."""
    if MMLogger.check_instance_created(LOGGER):
        return MMLogger.get_instance(LOGGER)
    return MMLogger.get_instance(LOGGER, log_file=log_file)


# --------------------------------------------------------------------- #
# running one training job
class LastValMetricsHook(Hook):
    """Keep the metrics of the last validation of a run."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.metrics: Dict[str, float] = {}

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Store ``metrics`` as floats."""
        self.metrics = {k: float(v) for k, v in (metrics or {}).items()}


def config_digest(cfg: Config) -> str:
    """A short hash of a config's text (ignoring its work_dir)."""
    cfg = copy.deepcopy(cfg)
    cfg.pop('work_dir', None)
    cfg.pop('experiment_name', None)
    return hashlib.sha1(cfg.pretty_text.encode()).hexdigest()[:12]


def train_and_evaluate(config_file: str, num_threads: int = 0) -> dict:
    """Train the config in ``config_file`` and validate it once at the end.

    Args:
        config_file (str): A dumped config with its ``work_dir``.
        num_threads (int): ``torch.set_num_threads`` for this run; 0 keeps
            the current setting.

    Returns:
        dict: ``metrics`` (the final validation), ``train_time`` (s,
        training and validation), ``iters`` and ``work_dir``.
    """
    import torch
    from mmengine.runner import Runner

    import mmkd_channel  # noqa: F401  (registries, mmkd_channel::)
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    cfg = Config.fromfile(config_file)
    # unique (the Runner adds a timestamp in seconds): MMEngine keys its
    # logger and message hub by this name
    cfg.experiment_name = (f"{cfg.get('experiment_name', 'run')}_"
                           f'{uuid.uuid4().hex[:6]}')
    t0 = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    hook = LastValMetricsHook()
    runner.register_hook(hook)
    runner.train()
    result = dict(
        metrics=hook.metrics,
        train_time=time.perf_counter() - t0,
        iters=runner.iter,
        work_dir=cfg.work_dir)
    with open(osp.join(cfg.work_dir, 'result.json'), 'w') as f:
        json.dump(dict(result, digest=config_digest(cfg)), f, indent=2)
    return result


def cached_result(cfg: Config) -> Optional[dict]:
    """The ``result.json`` of a finished run of this very config, if any."""
    path = osp.join(cfg.work_dir, 'result.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        result = json.load(f)
    if result.get('digest') != config_digest(cfg) or not result['metrics']:
        return None
    return result


# --------------------------------------------------------------------- #
# config helpers shared by the tasks
def load_config(path: str) -> Config:
    """``Config.fromfile`` for local paths and ``pkg::`` paths alike."""
    import mmkd_channel  # noqa: F401  (mmkd_channel:: scope)
    from mmkd_channel.utils import resolve_config_path
    return Config.fromfile(resolve_config_path(path))


def set_schedule(cfg: Config,
                 epochs: int,
                 lr: float,
                 warmup_epochs: int = 1,
                 checkpoint: bool = False,
                 log_interval: int = 10,
                 clip_grad: Optional[dict] = None,
                 weight_decay: Optional[float] = None) -> None:
    """Cosine schedule with a linear warm-up over ``epochs`` epochs.

    The host's optimizer type and momentum are kept, and its weight decay
    unless ``weight_decay`` is given; the learning rate changes. One
    validation, at the end.

    Args:
        cfg (Config): The config, modified in place.
        epochs (int): Training epochs.
        lr (float): Peak learning rate.
        warmup_epochs (int): Epochs of linear warm-up from ``lr / 10``.
        checkpoint (bool): Save the final checkpoint (teachers need it).
        log_interval (int): Iterations between log lines.
        clip_grad (dict, optional): Gradient clipping (else none).
        weight_decay (float, optional): Replaces the host's weight decay.
    """
    cfg.optim_wrapper.optimizer.lr = lr
    if weight_decay is not None:
        cfg.optim_wrapper.optimizer.weight_decay = weight_decay
    cfg.optim_wrapper.pop('clip_grad', None)
    if clip_grad:
        cfg.optim_wrapper.clip_grad = clip_grad
    warmup_epochs = min(warmup_epochs, max(epochs - 1, 0))
    scheds = []
    if warmup_epochs:
        scheds.append(
            dict(
                type='LinearLR',
                start_factor=0.1,
                by_epoch=True,
                begin=0,
                end=warmup_epochs,
                convert_to_iter_based=True))
    scheds.append(
        dict(
            type='CosineAnnealingLR',
            by_epoch=True,
            begin=warmup_epochs,
            end=epochs,
            T_max=epochs - warmup_epochs,
            eta_min=0.0,
            convert_to_iter_based=True))
    cfg.param_scheduler = scheds
    cfg.train_cfg = ConfigDict(
        type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=log_interval)
    cfg.log_processor = dict(
        type='LogProcessor', window_size=log_interval, by_epoch=True)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook',
        interval=epochs,
        max_keep_ckpts=1,
        save_last=True) if checkpoint else None
    cfg.pop('auto_scale_lr', None)


def build_model(model_cfg: dict, scope: str):
    """Build a host model dict in ``scope`` (random weights, eval mode)."""
    from mmengine.registry import DefaultScope

    from mmkd_channel.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(copy.deepcopy(model_cfg)).eval()


def probe_channels(model, paths: Sequence[str],
                   input_shape: Sequence[int]) -> Dict[str, int]:
    """Channels of the features a model produces at ``paths``.

    The model runs in ``tensor`` mode on a random input without data
    samples; a host model that needs them (a detector's RPN) fails after
    the backbone and neck, which is all the recorded paths need.

    Args:
        model (nn.Module): A host model.
        paths (Sequence[str]): Module paths as in ``distill``.
        input_shape (tuple): ``(N, C, H, W)`` of the dummy input.

    Returns:
        dict: ``path -> channels`` (dim 1 of the first recorded tensor).
    """
    import torch

    from mmkd_channel.models.distillers.recorder import FeatureRecorder
    from mmkd_channel.models.losses.base import as_tensor_list
    rec = FeatureRecorder(model, list(paths))
    with torch.no_grad(), rec.record() as out:
        try:
            model(torch.rand(*input_shape), None, mode='tensor')
        except Exception:  # past the recorded modules: not needed
            pass
    missing = [p for p in paths if p not in out]
    if missing:
        raise RuntimeError(f'{type(model).__name__}: no output recorded at '
                           f'{missing} on a dummy input')
    return {p: as_tensor_list(out[p])[0].shape[1] for p in paths}


def fit_connector_channels(distill: dict, student, teacher,
                           input_shape: Sequence[int]) -> None:
    """Set ``in_channels``/``out_channels`` of connectors to the models'.

    A shipped preset names the channels of its full-size pair; this sets
    them to those of the benchmark's (smaller) pair, found by running both
    models on a dummy input. Connectors without these keys are untouched.

    Args:
        distill (dict): The config's ``distill`` dict, modified in place.
        student (nn.Module): The student model.
        teacher (nn.Module): The teacher model.
        input_shape (tuple): Dummy input shape.
    """
    widths = ('in_channels', 'out_channels')
    if not any(
            isinstance(spec.get('connector'), dict) and any(
                k in spec['connector'] for k in widths)
            for spec in distill.values()):
        return  # width-free presets: the distiller fills them in
    s_paths = [spec['student'] for spec in distill.values()]
    t_paths = [
        spec.get('teacher', spec['student']) for spec in distill.values()
    ]
    s_ch = probe_channels(student, s_paths, input_shape)
    t_ch = probe_channels(teacher, t_paths, input_shape)
    for spec in distill.values():
        conn = spec.get('connector')
        if not isinstance(conn, dict):
            continue
        if 'in_channels' in conn:
            conn['in_channels'] = s_ch[spec['student']]
        if 'out_channels' in conn:
            conn['out_channels'] = t_ch[spec.get('teacher', spec['student'])]
        if 'hidden_channels' in conn:
            conn['hidden_channels'] = conn['out_channels']


def retarget_ofd(distill: dict, teacher) -> None:
    """Point OFD's teacher paths at the stage ends of ``teacher``.

    An OFD preset names the pre-ReLU stage ends of its own teacher
    (ResNet-50 ``layer1.2``, ResNet-101 ``layer3.22``); the benchmark's
    teacher has other block counts. Terms are taken as stages 0, 1, ...
    of the last ``len(distill)`` stages, in order.
    """
    from mmkd_channel.models.ofd import ofd_stage_paths
    specs = list(distill.values())
    n = len(specs)
    for i, spec in enumerate(specs):
        spec['teacher'] = ofd_stage_paths(teacher, i - n)[0]


def _host_dict(model_cfg: dict) -> dict:
    """A model dict without the ``_scope_`` that inheritance may add."""
    d = model_cfg.to_dict() if hasattr(model_cfg,
                                       'to_dict') else dict(model_cfg)
    d.pop('_scope_', None)
    return d


# --------------------------------------------------------------------- #
# tasks
@dataclass
class RunSpec:
    """One training job of the benchmark."""

    task: str
    model: str  # 'teacher', 'plain' or a method name
    seed: int
    config_file: str


class Task:
    """A dataset, a teacher, a plain student and the applicable methods.

    Subclasses define the shipped configs and the overrides for the
    generated data. ``settings`` holds the data size and the schedule;
    ``quick`` settings make a seconds-long smoke run.
    """

    name = ''
    metric = ''  # key in the validation metrics
    metric_label = ''
    scale = 1.0  # metric -> percent
    scope = ''
    teacher_config = ''
    student_config = ''
    # method -> shipped configs, the first that exists is used: whole if
    # its student is this task's student baseline, else only its distill
    # preset around the baseline (as the shipped configs wrap theirs)
    methods: Dict[str, Sequence[str]] = {}
    not_applicable: Dict[str, str] = {}
    defaults: dict = {}
    quick_defaults: dict = {}
    clip_grad: Optional[dict] = None

    def __init__(self, out_dir: str, quick: bool = False, **overrides) -> None:
        self.out_dir = osp.join(out_dir, self.name)
        self.quick = quick
        self.settings = dict(self.defaults)
        if quick:
            self.settings.update(self.quick_defaults)
        unknown = set(overrides) - set(self.settings)
        if unknown:
            raise KeyError(f'{self.name}: unknown settings {sorted(unknown)}'
                           f'; known: {sorted(self.settings)}')
        self.settings.update({
            k: v
            for k, v in overrides.items() if v is not None
        })
        self.data: Optional[dict] = None
        self.sources: Dict[str, tuple] = {}

    def shipped_config(self, method: str) -> Optional[str]:
        """The first existing shipped config of ``method`` (or None)."""
        import mmkd_channel  # noqa: F401
        from mmkd_channel.utils import resolve_config_path
        for path in self.methods.get(method, ()):
            try:
                resolve_config_path(path)
            except FileNotFoundError:
                continue
            return path
        return None

    # subclasses -------------------------------------------------------
    def make_data(self) -> dict:
        """Write the dataset; return what the tiny-config helper needs."""
        raise NotImplementedError

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        """Point ``cfg`` at the data and set the schedule (in place)."""
        raise NotImplementedError

    def student_model(self, model: dict) -> None:
        """Turn the shipped student model dict into the benchmark's."""

    def teacher_model(self, model: dict) -> None:
        """Turn the teacher baseline's model dict into the benchmark's."""

    def adapt_distill(self, method: str, distill: dict) -> None:
        """Per-task changes of a shipped preset (module paths, weights)."""

    def describe(self) -> List[str]:
        """Lines describing the setup, for the report."""
        return []

    # shared -----------------------------------------------------------
    def work_dir(self, model: str, seed: int) -> str:
        """``<out_dir>/<task>/<model>/seed<k>``."""
        return osp.join(self.out_dir, model, f'seed{seed}')

    def prepare(self) -> dict:
        """Write the data once."""
        if self.data is None:
            self.data = self.make_data()
        return self.data

    def _finish(self, cfg: Config, model: str, seed: int) -> Config:
        work_dir = self.work_dir(model, seed)
        self.apply_data(cfg, work_dir, seed)
        cfg.experiment_name = f'{self.name}_{model}_seed{seed}'
        return cfg

    def build_teacher_cfg(self) -> Config:
        """The teacher's config (trained once, seed 0)."""
        cfg = load_config(self.teacher_config)
        self.teacher_model(cfg.model)
        cfg = self._finish(cfg, TEACHER, 0)
        set_schedule(
            cfg,
            self.settings['teacher_epochs'],
            self.settings['teacher_lr'],
            checkpoint=True,
            log_interval=self.log_interval(),
            clip_grad=self.clip_grad,
            weight_decay=self.settings.get('weight_decay'))
        return cfg

    def build_plain_cfg(self, seed: int) -> Config:
        """The plain student's config."""
        cfg = load_config(self.student_config)
        self.student_model(cfg.model)
        cfg = self._finish(cfg, PLAIN, seed)
        self._student_schedule(cfg)
        return cfg

    def _student_schedule(self, cfg: Config) -> None:
        set_schedule(
            cfg,
            self.settings['epochs'],
            self.settings['lr'],
            log_interval=self.log_interval(),
            clip_grad=self.clip_grad,
            weight_decay=self.settings.get('weight_decay'))

    def iters(self) -> int:
        """Training iterations per epoch."""
        s = self.settings
        return max(1, math.ceil(s['num_train'] / s['batch_size']))

    def log_interval(self) -> int:
        """Log once per epoch."""
        return self.iters()

    def build_distill_cfg(self, method: str, seed: int, teacher_cfg_file: str,
                          teacher_ckpt: str) -> Config:
        """A shipped distillation config with the benchmark's pair.

        The student dict gets exactly the plain student's changes (checked
        against the plain config), the teacher becomes the trained
        benchmark teacher, and connector channels follow the new pair.
        """
        path = self.shipped_config(method)
        cfg = load_config(path)
        base = load_config(self.student_config).model
        same = (
            cfg.model.student.get('type') == base.get('type')
            and cfg.model.student.get('backbone', {}).get('type') == base.get(
                'backbone', {}).get('type'))
        if not same:
            cfg = self.wrap_preset(cfg)
        self.sources[method] = (path, 'whole config' if same else
                                'its distill preset on the plain student')
        self.student_model(cfg.model.student)
        cfg.model.teacher = teacher_cfg_file
        cfg = self._finish(cfg, method, seed)
        teacher = build_model(
            Config.fromfile(teacher_cfg_file).model, self.scope)
        student = build_model(cfg.model.student, self.scope)
        if method == 'ofd':
            retarget_ofd(cfg.model.distill, teacher)
        self.adapt_distill(method, cfg.model.distill)
        fit_connector_channels(cfg.model.distill, student, teacher,
                               self.probe_shape())
        cfg.model.teacher_ckpt = teacher_ckpt
        plain = self.build_plain_cfg(seed)
        if _host_dict(plain.model) != _host_dict(cfg.model.student):
            raise RuntimeError(
                f'{self.name}/{method}: the distilled student differs from '
                f'the plain student:\n{plain.model}\nvs\n'
                f'{cfg.model.student}')
        self._student_schedule(cfg)
        return cfg

    def wrap_preset(self, shipped: Config) -> Config:
        """Wrap the student baseline as the shipped configs do, with the
        ``distill`` preset of ``shipped`` (for methods shipped only for
        another student)."""
        cfg = load_config(self.student_config)
        keep = ('distill', 'truncate_teacher', 'check_input_shape')
        cfg.model = ConfigDict(
            type='mmkd_channel.FeatureDistiller',
            student=cfg.model,
            teacher=None,
            teacher_ckpt=None,
            **{k: shipped.model[k]
               for k in keep if k in shipped.model})
        dp = shipped.get('data_preprocessor', {}).get('type')
        if dp and cfg.get('data_preprocessor') is not None:
            cfg.data_preprocessor.type = dp
        return cfg

    def probe_shape(self) -> tuple:
        """Input shape for probing feature channels."""
        return (1, 3, 64, 64)


class DigitsTask(Task):
    """scikit-learn's handwritten digits in mmpretrain's ImageNet format.

    1,797 real 8x8 images, upsampled to ``img_size``; ``num_train`` of them
    (stratified) train, the rest validate. Teacher: mmpretrain's ResNet-18
    (its ImageNet config; the stem's stride 4 brings 32 px back to the
    digits' native 8x8). Student: this project's MobileNetV1 at
    ``widen_factor`` (a small depthwise-separable net; the shipped
    MobileNetV1 configs are 1.0x). Augmentation: random crop with padding;
    no flips (they change digits).
    """

    name = 'digits'
    metric = 'accuracy/top1'
    metric_label = 'top-1 (%)'
    scale = 1.0
    scope = 'mmpretrain'
    teacher_config = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
    student_config = 'mmkd_channel::mobilenet_v1/mobilenet-v1_8xb32_in1k.py'
    methods = {
        'cwt': ['mmkd_channel::cwt/cwt_r50-mbv1_last-stage_100e_in1k.py'],
        'ofd': ['mmkd_channel::ofd/ofd_r50-mbv1_4-stages_100e_in1k.py'],
        'sakd': [
            'mmkd_channel::sakd/sakd_r50-mbv1_last-stage_100e_in1k.py',
            'mmkd_channel::sakd/sakd_r50-r18_last-stage_200e_cifar100.py'
        ],
        'kd': [
            'mmkd_channel::kd/kd_r50-mbv1_logits_100e_in1k.py',
            'mmkd_channel::kd/kd_r50-r18_logits_200e_cifar100.py'
        ],
    }
    not_applicable = {
        'cwd':
        'CWD is a dense-prediction loss (a softmax over the spatial '
        'positions of each channel); the last stage of a 32 px '
        'classifier is 1x1',
    }
    defaults = dict(
        img_size=32,
        num_train=300,
        widen_factor=0.5,
        batch_size=32,
        epochs=40,
        lr=0.05,
        weight_decay=5e-4,
        teacher_epochs=60,
        teacher_lr=0.05,
        cwt_weight=20.0,
        val_per_class=None)
    quick_defaults = dict(
        num_train=40,
        epochs=1,
        teacher_epochs=1,
        batch_size=20,
        val_per_class=4)

    def make_data(self) -> dict:
        """Write the digits once (split seed 0, shared by every run)."""
        from mmkd_channel.testing import make_digits_imagenet
        s = self.settings
        data = make_digits_imagenet(
            osp.join(self.out_dir, 'data'),
            img_size=s['img_size'],
            num_train=s['num_train'],
            seed=0)
        if s['val_per_class']:
            data['val_ann'] = subsample_ann(
                osp.join(data['data_root'], data['val_ann']),
                s['val_per_class'])
        return data

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        from mmkd_channel.testing.tiny_configs import tiny_cls_config
        s = self.settings
        tiny_cls_config(
            cfg,
            self.prepare(),
            work_dir,
            img_size=s['img_size'],
            batch_size=s['batch_size'],
            seed=seed)
        size = s['img_size']
        train = [
            dict(type='LoadImageFromFile'),
            dict(type='RandomCrop', crop_size=size, padding=max(1, size // 8)),
            dict(type='PackInputs')
        ]
        test = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
        cfg.train_dataloader.dataset.pipeline = train
        for key in ('val_dataloader', 'test_dataloader'):
            cfg[key].dataset.pipeline = test
            cfg[key].batch_size = 128

    def student_model(self, model: dict) -> None:
        model.backbone.widen_factor = self.settings['widen_factor']
        model.head.in_channels = int(1024 * self.settings['widen_factor'])

    def adapt_distill(self, method: str, distill: dict) -> None:
        if method == 'cwt' and self.settings['cwt_weight'] is not None:
            distill.last_stage.loss.loss_weight = self.settings['cwt_weight']
        elif method == 'ofd':
            # the authors' small-image scaling 1e-3 (CIFAR) instead of
            # the preset's 1e-4 (ImageNet)
            for spec in distill.values():
                spec.loss.loss_weight *= 10
        elif method == 'sakd':
            spec = distill.last_stage
            spec.student = 'backbone.layers.12'
            spec.teacher = 'backbone.layer4'
            spec.loss.num_classes = 10

    def probe_shape(self) -> tuple:
        return (1, 3, self.settings['img_size'], self.settings['img_size'])

    def describe(self) -> List[str]:
        s = self.settings
        return [
            f"sklearn digits, {s['num_train']} train images (stratified, "
            f"split seed 0), the rest for validation, {s['img_size']} px",
            f"teacher ResNet-18 ({s['teacher_epochs']} epochs, trained "
            f"once); student MobileNetV1 {s['widen_factor']}x; "
            f"{s['epochs']} epochs, batch {s['batch_size']}, SGD lr "
            f"{s['lr']}, weight decay {s['weight_decay']}, cosine; CWT "
            f"loss weight {s['cwt_weight']}",
        ]


class CocoTask(Task):
    """Generated COCO-format shapes (tiny scale): Faster R-CNN R50 -> R18.

    The shipped Faster R-CNN configs (R101 -> R50 FPN) with a tiny pair
    that trains from scratch on CPU: teacher R50-FPN (mmdet's own 1x
    config), student R18-FPN. Detection from scratch on a few dozen images
    learns little; the numbers show whether the pipeline runs, not what
    the methods buy at scale.
    """

    name = 'coco'
    metric = 'coco/bbox_mAP'
    metric_label = 'bbox mAP (%)'
    scale = 100.0
    scope = 'mmdet'
    teacher_config = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
    student_config = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py'
    methods = {
        'cwt': ['mmkd_channel::cwt/cwt_frcnn-r101-frcnn-r50_fpn_2x_coco.py'],
        'cwd': ['mmkd_channel::cwd/cwd_frcnn-r101-frcnn-r50_fpn_2x_coco.py'],
    }
    not_applicable = {
        'ofd': 'no shipped detection config',
        'sakd': 'an image-level classification branch; no detection '
        'config',
        'kd': 'no shipped detection config',
    }
    defaults = dict(
        img_size=128,
        num_train=32,
        num_val=16,
        batch_size=2,
        epochs=8,
        lr=0.02,
        teacher_epochs=8,
        teacher_lr=0.02)
    quick_defaults = dict(num_train=4, num_val=2, epochs=1, teacher_epochs=1)
    clip_grad = dict(max_norm=10, norm_type=2)

    def make_data(self) -> dict:
        """Write the shapes once (seed 0)."""
        from mmkd_channel.testing import make_coco_detection
        s = self.settings
        return make_coco_detection(
            osp.join(self.out_dir, 'data'),
            num_train=s['num_train'],
            num_val=s['num_val'],
            img_size=(s['img_size'], s['img_size']))

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        from mmkd_channel.testing.tiny_configs import tiny_det_config
        s = self.settings
        tiny_det_config(
            cfg,
            self.prepare(),
            work_dir,
            img_scale=(s['img_size'], s['img_size']),
            batch_size=s['batch_size'],
            seed=seed,
            metrics=['bbox'])

    def student_model(self, model: dict) -> None:
        model.backbone.depth = 18
        model.neck.in_channels = [64, 128, 256, 512]

    def describe(self) -> List[str]:
        s = self.settings
        return [
            f"generated COCO shapes, {s['num_train']} train / "
            f"{s['num_val']} val images, {s['img_size']} px",
            f"teacher Faster R-CNN R50-FPN ({s['teacher_epochs']} epochs, "
            f"from scratch, trained once); student R18-FPN; "
            f"{s['epochs']} epochs, batch {s['batch_size']}, SGD lr "
            f"{s['lr']}, cosine",
        ]


class CityscapesTask(Task):
    """Generated Cityscapes-format street scenes (tiny): PSPNet R50 -> R18.

    The shipped PSPNet configs (R101-D8 -> R18-D8) with a teacher that
    trains from scratch on CPU: PSPNet R50-D8 (mmseg's own config). The
    student is the shipped configs' PSPNet R18-D8 as it is.
    """

    name = 'cityscapes'
    metric = 'mIoU'
    metric_label = 'mIoU (%)'
    scale = 1.0
    scope = 'mmseg'
    teacher_config = ('mmseg::pspnet/'
                      'pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py')
    student_config = ('mmseg::pspnet/'
                      'pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    methods = {
        'cwt': [
            'mmkd_channel::cwt/cwt_pspnet-r101-pspnet-r18_last-stage_'
            '80k_cityscapes-512x1024.py'
        ],
        'cwd': [
            'mmkd_channel::cwd/cwd_pspnet-r101-pspnet-r18_logits_'
            '80k_cityscapes-512x1024.py'
        ],
        'ofd': [
            'mmkd_channel::ofd/ofd_pspnet-r101-pspnet-r18_4-stages_'
            '80k_cityscapes-512x1024.py'
        ],
        'kd': [
            'mmkd_channel::kd/kd_pspnet-r101-pspnet-r18_logits_'
            '80k_cityscapes-512x1024.py'
        ],
    }
    not_applicable = {
        'sakd': 'an image-level classification branch; no segmentation '
        'config',
    }
    defaults = dict(
        img_h=64,
        img_w=128,
        num_train=16,
        num_val=8,
        batch_size=4,
        epochs=10,
        lr=0.01,
        teacher_epochs=10,
        teacher_lr=0.01)
    quick_defaults = dict(
        num_train=2, num_val=1, batch_size=2, epochs=1, teacher_epochs=1)

    def make_data(self) -> dict:
        """Write the scenes once (seed 0)."""
        from mmkd_channel.testing import make_cityscapes
        s = self.settings
        return make_cityscapes(
            osp.join(self.out_dir, 'data'),
            num_train=s['num_train'],
            num_val=s['num_val'],
            img_size=(s['img_h'], s['img_w']))

    def apply_data(self, cfg: Config, work_dir: str, seed: int) -> None:
        from mmkd_channel.testing.tiny_configs import tiny_seg_config
        s = self.settings
        tiny_seg_config(
            cfg,
            self.prepare(),
            work_dir,
            img_scale=(s['img_w'], s['img_h']),
            crop_size=(s['img_h'], s['img_w']),
            batch_size=s['batch_size'],
            seed=seed)

    def probe_shape(self) -> tuple:
        return (1, 3, self.settings['img_h'], self.settings['img_w'])

    def describe(self) -> List[str]:
        s = self.settings
        return [
            f"generated Cityscapes scenes, {s['num_train']} train / "
            f"{s['num_val']} val images, {s['img_h']}x{s['img_w']} px",
            f"teacher PSPNet R50-D8 ({s['teacher_epochs']} epochs, from "
            f"scratch, trained once); student PSPNet R18-D8; "
            f"{s['epochs']} epochs, batch {s['batch_size']}, SGD lr "
            f"{s['lr']}, cosine",
        ]


def subsample_ann(ann_file: str, per_class: int) -> str:
    """Write ``<ann>_<k>.txt`` with the first ``per_class`` lines per label.

    Returns:
        str: The new file's path relative to the data root's ``meta``
        parent, i.e. ``meta/<name>``.
    """
    counts: Dict[str, int] = {}
    keep = []
    with open(ann_file) as f:
        for line in f:
            label = line.split()[-1]
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                keep.append(line)
    stem, ext = osp.splitext(ann_file)
    out = f'{stem}_{per_class}{ext}'
    with open(out, 'w') as f:
        f.writelines(keep)
    return osp.join(osp.basename(osp.dirname(out)), osp.basename(out))


TASKS: Dict[str, type] = {
    'digits': DigitsTask,
    'coco': CocoTask,
    'cityscapes': CityscapesTask
}


# --------------------------------------------------------------------- #
# the benchmark
@dataclass
class RunResult:
    """Outcome of one run."""

    task: str
    model: str
    seed: int
    value: float  # the task metric, in percent
    train_time: float
    cached: bool = False


def _dump(cfg: Config) -> str:
    os.makedirs(cfg.work_dir, exist_ok=True)
    path = osp.join(cfg.work_dir, 'config.py')
    cfg.dump(path)
    return path


def _run(spec: RunSpec,
         metric: str,
         scale: float,
         num_threads: int = 0) -> RunResult:
    """Train one run (or reuse its result); also the process-pool entry."""
    cfg = Config.fromfile(spec.config_file)
    result = cached_result(cfg)
    cached = result is not None
    if not cached:
        result = train_and_evaluate(spec.config_file, num_threads)
    value = result['metrics'].get(metric, math.nan) * scale
    return RunResult(spec.task, spec.model, spec.seed, value,
                     result['train_time'], cached)


def run_efficacy(
    tasks: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str,
    quick: bool = False,
    jobs: int = 1,
    settings: Optional[Dict[str, dict]] = None,
    on_result: Optional[Callable[[RunResult],
                                 None]] = None) -> Dict[str, dict]:
    """Train teacher, plain and distilled students; collect the metrics.

    Args:
        tasks (Sequence[str]): Task names (keys of :data:`TASKS`).
        methods (Sequence[str]): Methods to distill with; the ones that do
            not apply to a task are listed in its report as such.
        seeds (Sequence[int]): Student seeds.
        out_dir (str): Where data, work dirs and reports go.
        quick (bool): Tiny data and one epoch (smoke test).
        jobs (int): Runs trained in parallel processes (each with
            ``torch threads / jobs`` threads); 1 trains in this process.
        settings (dict, optional): ``task -> {setting: value}`` overrides
            of the task defaults (``epochs``, ``lr``, ...).
        on_result (callable, optional): Called with each finished
            :class:`RunResult`.

    Returns:
        dict: ``task -> dict(task=Task, runs=[RunResult], skipped={method:
        reason}, time=seconds)``.
    """
    import torch
    logger = get_logger()
    threads = max(1, torch.get_num_threads() // max(1, jobs))
    report = {}
    for name in tasks:
        if name not in TASKS:
            raise KeyError(f'unknown task {name!r}; known: {list(TASKS)}')
        t0 = time.perf_counter()
        task = TASKS[name](
            out_dir, quick=quick, **((settings or {}).get(name, {})))
        task.prepare()
        skipped = {
            m: task.not_applicable.get(m, 'no shipped config')
            for m in methods if task.shipped_config(m) is None
        }
        todo = [m for m in methods if m not in skipped]
        logger.info(f'[{name}] teacher, plain student and {todo} over '
                    f'seeds {list(seeds)}; not applicable: {skipped}')
        runs: List[RunResult] = []

        def done(res: RunResult) -> None:
            runs.append(res)
            logger.info(
                f'[{res.task}] {res.model} seed {res.seed}: '
                f'{task.metric_label} {res.value:.2f} '
                f'({res.train_time:.0f} s{", cached" if res.cached else ""})')
            if on_result is not None:
                on_result(res)

        teacher_cfg = task.build_teacher_cfg()
        teacher_file = _dump(teacher_cfg)
        done(
            _run(
                RunSpec(name, TEACHER, 0, teacher_file), task.metric,
                task.scale))
        teacher_ckpt = osp.join(
            teacher_cfg.work_dir, 'epoch_'
            f"{teacher_cfg.train_cfg.max_epochs}.pth")
        specs = []
        for seed in seeds:
            specs.append(
                RunSpec(name, PLAIN, seed, _dump(task.build_plain_cfg(seed))))
            for method in todo:
                cfg = task.build_distill_cfg(method, seed, teacher_file,
                                             teacher_ckpt)
                # a retrained teacher invalidates cached students
                cfg.benchmark_teacher = config_digest(teacher_cfg)
                specs.append(RunSpec(name, method, seed, _dump(cfg)))
        if jobs <= 1:
            for spec in specs:
                done(_run(spec, task.metric, task.scale))
        else:
            with ProcessPoolExecutor(
                    jobs, mp_context=get_context('spawn'),
                    max_tasks_per_child=1) as pool:
                futures = [
                    pool.submit(_run, s, task.metric, task.scale, threads)
                    for s in specs
                ]
                for fut in futures:
                    done(fut.result())
        report[name] = dict(
            task=task,
            runs=runs,
            skipped=skipped,
            time=time.perf_counter() - t0)
    return report


def parse_settings(items: Optional[Sequence[str]]) -> Dict[str, dict]:
    """``['digits.epochs=20', ...]`` -> ``{'digits': {'epochs': 20}}``.

    Values are Python literals where they parse as such, else strings.
    """
    import ast
    out: Dict[str, dict] = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        task, dot, name = key.partition('.')
        if not (sep and dot and task and name):
            raise ValueError(f'expected TASK.KEY=VALUE, got {item!r}')
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        out.setdefault(task, {})[name] = value
    return out


# --------------------------------------------------------------------- #
# reporting
# yapf: disable
def summarize(runs: Sequence[RunResult],
              order: Sequence[str] = ()) -> List[dict]:
    # yapf: enable
    """Mean, std and gain over the plain student per model.

    Args:
        runs (Sequence[RunResult]): Runs of one task.
        order (Sequence[str]): Methods in the order to list them.

    Returns:
        list[dict]: ``model, n, mean, std, gain, gain_std, time`` per model:
        teacher first, then plain, then the methods. ``gain`` is the
        mean over seeds of (method - plain) on the same seed, ``gain_std``
        its std; ``std`` is the sample std over seeds (0 for one seed).
    """
    by_model: Dict[str, Dict[int, RunResult]] = {}
    for r in runs:
        by_model.setdefault(r.model, {})[r.seed] = r
    names = [TEACHER, PLAIN] + [m for m in order if m in by_model]
    names += [m for m in by_model if m not in names]
    plain = by_model.get(PLAIN, {})
    rows = []
    for m in names:
        if m not in by_model:
            continue
        vals = [r.value for _, r in sorted(by_model[m].items())]
        row = dict(
            model=m,
            n=len(vals),
            mean=statistics.fmean(vals),
            std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
            time=statistics.fmean(r.train_time for r in by_model[m].values()),
            values=vals,
            gain=None,
            gain_std=None)
        if m not in (TEACHER, PLAIN) and plain:
            diffs = [
                r.value - plain[s].value
                for s, r in sorted(by_model[m].items()) if s in plain
            ]
            if diffs:
                row['gain'] = statistics.fmean(diffs)
                row['gain_std'] = (
                    statistics.stdev(diffs) if len(diffs) > 1 else 0.0)
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict], metric_label: str) -> str:
    """Markdown table: model, seeds, mean +- std, gain over plain, time."""
    lines = [
        f'| model | seeds | {metric_label} mean +- std | gain over '
        'plain (mean +- std of paired differences) | train time / '
        'run (s) |', '|---|---:|---:|---:|---:|'
    ]
    for r in rows:
        gain = ('' if r['gain'] is None else
                f"{r['gain']:+.2f} +- {r['gain_std']:.2f}")
        lines.append(f"| {r['model']} | {r['n']} | {r['mean']:.2f} +- "
                     f"{r['std']:.2f} | {gain} | {r['time']:.0f} |")
    return '\n'.join(lines)


def bar_chart(rows: Sequence[dict], path: str, title: str,
              metric_label: str) -> str:
    """Bar chart of mean +- std per model, seeds as dots; saved as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [r['model'] for r in rows]
    means = [r['mean'] for r in rows]
    stds = [r['std'] for r in rows]
    colours = [
        '#7f7f7f' if n == TEACHER else '#1f77b4' if n == PLAIN else '#ff7f0e'
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2.5, 4))
    ax.bar(names, means, yerr=stds, capsize=4, color=colours, alpha=0.85)
    for i, r in enumerate(rows):
        xs = [i] * len(r['values'])
        ax.scatter(xs, r['values'], s=10, color='black', zorder=3)
        label = f"{r['mean']:.1f}"
        if r['gain'] is not None:
            label += f"\n{r['gain']:+.1f}"
        top = max([r['mean'] + (r['std'] or 0)] +
                  [v for v in r['values'] if math.isfinite(v)])
        ax.annotate(
            label, (i, top),
            textcoords='offset points',
            xytext=(0, 4),
            ha='center',
            fontsize=8)
    vals = [v for r in rows for v in r['values'] if math.isfinite(v)]
    if vals:
        lo, hi = min(vals), max(vals)
        pad = max(1.0, (hi - lo) * 0.25)
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + 2 * pad))
    ax.set_ylabel(metric_label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def machine_line() -> str:
    """``N CPUs (model), torch T threads`` or the GPU's name."""
    import torch

    from .overhead import environment
    env = environment()
    if torch.cuda.is_available():
        return f'GPU {torch.cuda.get_device_name(0)}'
    return (f"{env['cpu_count']} CPU cores ({env['processor']}), torch "
            f"{env['torch']} with {env['torch_threads']} threads")


def write_report(report: Dict[str, dict],
                 out_dir: str,
                 methods: Sequence[str],
                 command: str = '',
                 total_time: Optional[float] = None) -> str:
    """Write ``results.md``, ``results.json`` and ``<task>.png``.

    Args:
        report (dict): What :func:`run_efficacy` returned.
        out_dir (str): Output directory.
        methods (Sequence[str]): Methods, in table order.
        command (str): The command line, quoted in the report.
        total_time (float, optional): Seconds of the whole run.

    Returns:
        str: The markdown text.
    """
    md = ['# Efficacy benchmark', '', f'Machine: {machine_line()}.']
    if total_time is not None:
        md[-1] += f' Whole run: {total_time / 60:.1f} min.'
    md.append('')
    if command:
        md += ['```bash', command, '```', '']
    data = {}
    for name, entry in report.items():
        task: Task = entry['task']
        rows = summarize(entry['runs'], methods)
        png = bar_chart(
            rows, osp.join(out_dir, f'{name}.png'),
            f'{name}: mean +- std over seeds (dots: seeds; '
            'labels: mean, gain over plain)', task.metric_label)
        md += [f'## {name}', ''] + [f'- {d}' for d in task.describe()]
        md += [f"- wall time of the task: {entry['time'] / 60:.1f} min", '']
        md += [markdown_table(rows, task.metric_label), '']
        for m, (path, how) in task.sources.items():
            md.append(f'- {m}: `{path}` ({how})')
        for m, why in entry['skipped'].items():
            md.append(f'- {m}: not run ({why})')
        md += ['', f'![{name}]({osp.basename(png)})', '']
        data[name] = dict(
            settings=task.settings,
            rows=rows,
            skipped=entry['skipped'],
            sources=task.sources,
            time=entry['time'],
            runs=[r.__dict__ for r in entry['runs']])
    text = '\n'.join(md)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(text)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(
            dict(
                command=command,
                total_time=total_time,
                machine=machine_line(),
                tasks=data),
            f,
            indent=2)
    return text
