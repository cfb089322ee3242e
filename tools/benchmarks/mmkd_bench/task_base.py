"""What a benchmark task is: a dataset, a teacher, a plain student and the
methods from the model index, with the config edits they share."""
import copy
import math
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config, ConfigDict

from .common import load_config
from .config_edits import (build_model, fit_connector_channels, host_dict,
                           retarget_ofd, set_schedule)

PLAIN = 'plain'
TEACHER = 'teacher'
ALL_METHODS = ('cwt', 'cwd', 'ofd', 'sakd', 'kd')
REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
# What a task can run besides the teacher and the plain student: name ->
# (method, i.e. the model-index collection whose config is used, extra
# FeatureDistiller arguments). '<method>_bf16' runs the method with the
# teacher in bf16, channels-last (docs/teacher_precision.md).
VARIANTS: Dict[str, Tuple[str, dict]] = {m: (m, {}) for m in ALL_METHODS}
VARIANTS.update({
    f'{m}_bf16': (m, dict(teacher_dtype='bf16', teacher_channels_last=True))
    for m in ALL_METHODS
})


# --------------------------------------------------------------------- #
# tasks
@dataclass
class RunSpec:
    """One training job of the benchmark."""

    task: str
    model: str  # 'teacher', 'plain' or a method name
    seed: int
    config_file: str


@dataclass
class RunResult:
    """Outcome of one run."""

    task: str
    model: str
    seed: int
    value: float  # the task metric, in percent
    train_time: float
    cached: bool = False


class Task:
    """A dataset, a teacher, a plain student and the applicable methods.

    Subclasses define the kind of model-index entry they take configs from
    (``results_task``, e.g. ``Image Classification``), the teacher and the
    overrides for the data. ``settings`` holds the data size and the
    schedule; ``quick`` settings make a seconds-long smoke run.

    A method's config is the first model-index entry of its collection with
    that ``results_task``: used whole if its student is this task's student
    baseline, else only its ``distill`` preset around the baseline (as the
    shipped configs wrap theirs). The student baseline is the host config
    the first such entry inherits (its first ``_base_``).
    """

    name = ''
    metric = ''  # key in the validation metrics
    metric_label = ''
    scale = 1.0  # metric -> percent
    scope = ''
    teacher_config = ''
    results_task = ''  # model-index ``Results[0].Task`` of its configs
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

    def shipped_configs(self) -> Dict[str, str]:
        """``method -> config path`` from the model index (first entry of
        the method's collection with this task's ``results_task``)."""
        from .model_index import load_pairs
        found: Dict[str, str] = {}
        for pair in load_pairs(REPO):
            if pair.task == self.results_task:
                found.setdefault(pair.collection.lower(),
                                 osp.join(REPO, pair.config))
        return found

    def shipped_config(self, variant: str) -> Optional[str]:
        """The config of ``variant``'s method (None if it has none)."""
        method = VARIANTS.get(variant, (variant, {}))[0]
        return self.shipped_configs().get(method)

    @property
    def student_config(self) -> str:
        """The student baseline: the first ``_base_`` of the task's first
        model-index config (a host config or this project's)."""
        from .model_index import base_configs
        configs = list(self.shipped_configs().values())
        if not configs:
            raise FileNotFoundError(
                f'{self.name}: no model-index entry with Results Task '
                f'{self.results_task!r} in {REPO}/model-index.yml')
        return base_configs(configs[0])[0]

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

    def build_distill_cfg(self, variant: str, seed: int, teacher_cfg_file: str,
                          teacher_ckpt: str) -> Config:
        """A shipped distillation config with the benchmark's pair.

        The student dict gets exactly the plain student's changes (checked
        against the plain config), the teacher becomes the trained
        benchmark teacher, connector channels follow the new pair and the
        variant's extra distiller arguments (:data:`VARIANTS`) are set.
        """
        method, extra = VARIANTS.get(variant, (variant, {}))
        path = self.shipped_config(variant)
        cfg = load_config(path)
        base = load_config(self.student_config).model
        same = (
            cfg.model.student.get('type') == base.get('type')
            and cfg.model.student.get('backbone', {}).get('type') == base.get(
                'backbone', {}).get('type'))
        if not same:
            cfg = self.wrap_preset(cfg)
        self.sources[variant] = (osp.relpath(path,
                                             REPO), 'whole config' if same else
                                 'its distill preset on the plain student')
        self.student_model(cfg.model.student)
        cfg.model.teacher = teacher_cfg_file
        cfg.model.update(copy.deepcopy(extra))
        cfg = self._finish(cfg, variant, seed)
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
        if host_dict(plain.model) != host_dict(cfg.model.student):
            raise RuntimeError(
                f'{self.name}/{variant}: the distilled student differs from '
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
