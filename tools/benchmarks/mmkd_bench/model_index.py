"""The distilled pairs of ``model-index.yml`` and what their metafiles say.

Config names are never written into the harness: every pair, its config
path and its published numbers come from the model index, so renaming a
config only means updating its metafile. Two metafile forms are read:

* OpenMMLab's: ``Results`` holds the distilled student's metric (``mIoU:
  75.54``) and ``Metadata.Student.Metrics`` the baseline's; the published
  gain is their difference;
* a published gain only: a ``Results`` metric named ``<metric> gain``, or,
  for papers that publish gains without absolute numbers, a ``Comment``
  of the model saying ``reports +3.9 box mAP`` (a comment that says "no
  published result" is not read).

Without ``Results`` the metric is the one the comment names, else the
first of ``Metadata.Student.Metrics``, else the usual one of the dataset's
task; the task follows from the metric.

A model distilled from one teacher names it in ``Metadata.Teacher``; one
distilled from several has ``Metadata.Teachers``, a dict with one entry
(``Config``, ``Weights``, ``Metrics``) per name of the config's
``teachers=dict(...)``.
"""
import ast
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml

# metafile metric name -> (key the host evaluator writes, factor that turns
# the evaluator's value into the metafile's unit)
METRICS = {
    'box AP': ('coco/bbox_mAP', 100.0),
    'mask AP': ('coco/segm_mAP', 100.0),
    'mIoU': ('mIoU', 1.0),
    'Top 1 Accuracy': ('accuracy/top1', 1.0),
    'Top 5 Accuracy': ('accuracy/top5', 1.0),
}
GAIN_SUFFIX = ' gain'
# how comments name the metrics -> the metafile names
ALIASES = {
    'box map': 'box AP',
    'bbox map': 'box AP',
    'box ap': 'box AP',
    'mask map': 'mask AP',
    'mask ap': 'mask AP',
    'miou': 'mIoU',
    'top-1': 'Top 1 Accuracy',
    'top 1 accuracy': 'Top 1 Accuracy',
}
TASK_OF_METRIC = {
    'box AP': 'Object Detection',
    'mask AP': 'Instance Segmentation',
    'mIoU': 'Semantic Segmentation',
    'Top 1 Accuracy': 'Image Classification',
    'Top 5 Accuracy': 'Image Classification',
}
# when a model has no metric at all: the task its data implies
TASK_OF_DATASET = {
    'COCO': 'Object Detection',
    'Cityscapes': 'Semantic Segmentation',
    'ImageNet-1k': 'Image Classification',
    'CIFAR-100': 'Image Classification',
}
METRIC_OF_TASK = {
    'Object Detection': 'box AP',
    'Instance Segmentation': 'mask AP',
    'Semantic Segmentation': 'mIoU',
    'Image Classification': 'Top 1 Accuracy',
}
_COMMENT_GAIN = re.compile(
    r'reports ([+-]\d+(?:\.\d+)?) (' +
    '|'.join(re.escape(a)
             for a in sorted(ALIASES, key=len, reverse=True)) + r')\b', re.I)
_NOT_PUBLISHED = re.compile(r'no published (result|number)', re.I)


@dataclass
class Pair:
    """One distilled config of the model index.

    Attributes:
        name (str): Its ``Name`` in the metafile.
        collection (str): ``In Collection`` (the method, e.g. ``CWT``).
        config (str): Config path relative to the repository root.
        task (str): ``Results[0].Task`` (e.g. ``Object Detection``).
        dataset (str): ``Results[0].Dataset``.
        metric (str): The first ``Results`` metric, without `` gain``.
        published (dict): ``distilled``, ``student``, ``teacher`` (absolute
            published numbers, None when not published) and ``gain``.
            With several teachers ``teacher`` is a dict ``name -> number``.
        metafile (str): The metafile that lists it.
        teachers (list[str]): The names of ``Metadata.Teachers`` (empty for
            a model with one ``Teacher``).
    """

    name: str
    collection: str
    config: str
    task: str = ''
    dataset: str = ''
    metric: str = ''
    published: Dict[str, Any] = field(default_factory=dict)
    metafile: str = ''
    teachers: List[str] = field(default_factory=list)

    @property
    def metric_key(self) -> str:
        """The evaluator key of :attr:`metric` (``coco/bbox_mAP``, ...)."""
        return METRICS.get(self.metric, (self.metric, 1.0))[0]

    @property
    def metric_scale(self) -> float:
        """Factor from the evaluator's value to the metafile's unit."""
        return METRICS.get(self.metric, (self.metric, 1.0))[1]


def _metric(metrics: Optional[dict], name: str) -> Optional[float]:
    value = (metrics or {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def comment_gain(comment: str) -> Optional[tuple]:
    """``(gain, metric)`` a comment reports (``reports +3.9 box mAP``)."""
    if not comment or _NOT_PUBLISHED.search(comment):
        return None
    m = _COMMENT_GAIN.search(comment)
    return (float(m.group(1)), ALIASES[m.group(2).lower()]) if m else None


def _pair(model: dict, metafile: str) -> Pair:
    meta = model.get('Metadata') or {}
    results = (model.get('Results') or [{}])[0]
    metrics = results.get('Metrics') or {}
    student_metrics = (meta.get('Student') or {}).get('Metrics') or {}
    first = next(iter(metrics), '')
    gain_form = first.endswith(GAIN_SUFFIX)
    metric = first[:-len(GAIN_SUFFIX)] if gain_form else first
    from_comment = comment_gain(
        str(model.get('Comment') or results.get('Comment') or ''))
    data = meta.get('Training Data', '')
    dataset = results.get('Dataset') or (data[0] if isinstance(data, list)
                                         and data else str(data))
    if not metric:
        metric = (from_comment[1] if from_comment else next(
            iter(student_metrics), '')) or METRIC_OF_TASK.get(
                TASK_OF_DATASET.get(dataset, ''), '')
    student = _metric(student_metrics, metric)
    several = meta.get('Teachers') or {}
    if several:
        teacher = {
            name: _metric((t or {}).get('Metrics'), metric)
            for name, t in several.items()
        }
    else:
        teacher = _metric((meta.get('Teacher') or {}).get('Metrics'), metric)
    distilled = None if gain_form else _metric(metrics, metric)
    if gain_form:
        gain = _metric(metrics, first)
    elif distilled is not None and student is not None:
        gain = distilled - student
    elif from_comment and from_comment[1] == metric:
        gain = from_comment[0]
    else:
        gain = None
    return Pair(
        name=model['Name'],
        collection=model.get('In Collection', ''),
        config=model['Config'],
        task=results.get('Task') or TASK_OF_METRIC.get(metric, ''),
        dataset=dataset,
        metric=metric,
        published=dict(
            distilled=distilled, student=student, teacher=teacher, gain=gain),
        metafile=metafile,
        teachers=list(several))


def load_pairs(repo: str,
               pattern: Optional[str] = None,
               index: str = 'model-index.yml') -> List[Pair]:
    """Models of the model index that have a teacher, in index order.

    Args:
        repo (str): Repository root (holds ``index``).
        pattern (str, optional): Keep names matching this regex
            (``re.search``).
        index (str): The model index, relative to ``repo``.

    Returns:
        list[Pair]: Models whose ``Metadata`` names a ``Teacher`` or
        several (``Teachers``).
    """
    with open(osp.join(repo, index)) as f:
        imports = yaml.safe_load(f).get('Import') or []
    pairs = []
    for metafile in imports:
        with open(osp.join(repo, metafile)) as f:
            models = yaml.safe_load(f).get('Models') or []
        for model in models:
            meta = model.get('Metadata') or {}
            if 'Teacher' in meta or 'Teachers' in meta:
                pairs.append(_pair(model, metafile))
    if pattern:
        regex = re.compile(pattern)
        pairs = [p for p in pairs if regex.search(p.name)]
    return pairs


def base_configs(config_file: str) -> List[str]:
    """The ``_base_`` entries of a config file, relative ones made absolute.

    Read from the file's syntax tree (``Config.fromfile`` merges them away).
    """
    with open(config_file) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], 'id', None) == '_base_'):
            value = ast.literal_eval(node.value)
            bases = [value] if isinstance(value, str) else list(value)
            here = osp.dirname(osp.abspath(config_file))
            return [
                b if '::' in b else osp.normpath(osp.join(here, b))
                for b in bases
            ]
    return []
