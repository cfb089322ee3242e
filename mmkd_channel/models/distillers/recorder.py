"""Record outputs of named submodules with forward hooks."""
import difflib
import re
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn


class StopForward(Exception):
    """Raised by a hook once every recorded module has produced its output.

    It ends a forward pass early (the teacher runs only as far as the
    recorded modules need); :meth:`FeatureRecorder.record` swallows it.
    """


def _similarity(path: str, name: str) -> float:
    """How alike two module paths are: whole paths and their last parts."""
    whole = difflib.SequenceMatcher(None, path, name).ratio()
    last = difflib.SequenceMatcher(None,
                                   path.rpartition('.')[2],
                                   name.rpartition('.')[2]).ratio()
    return max(whole, 0.5 * whole + 0.5 * last)


def suggest_paths(model: nn.Module, path: str, n: int = 6) -> str:
    """Module paths near ``path``, leaves included, for error messages.

    Lists the paths ranked by name similarity, then the submodules of the
    nearest existing parent of ``path`` (all of them when there are at
    most 20, else its children).
    """
    names = [k for k, _ in model.named_modules() if k]
    ranked = sorted(names, key=lambda k: -_similarity(str(path), k))[:n]
    parent = str(path)
    while parent and parent not in dict.fromkeys(names):
        parent = parent.rpartition('.')[0]
    root = model.get_submodule(parent) if parent else model
    prefix = f'{parent}.' if parent else ''
    subs = [prefix + k for k, _ in root.named_modules() if k]
    if len(subs) > 20:
        subs = [prefix + k for k, _ in root.named_children()]
    shown = subs if len(subs) <= 20 else subs[:20] + ['...']
    where = repr(parent) if parent else 'the model'
    return (f'Nearest existing paths: {ranked}; submodules of {where}: '
            f'{shown}')


def get_submodule(model: nn.Module,
                  path: str,
                  role: str = 'model',
                  key: str = 'module path') -> nn.Module:
    """``model.get_submodule(path)`` with an error that lists close paths.

    Args:
        model (nn.Module): The model to look in.
        path (str): Dotted module path such as ``'backbone.layer4'``.
        role (str): ``'student'`` or ``'teacher'``, used in the message.
        key (str): The config key that gave ``path``, used in the message.

    Raises:
        KeyError: if no submodule has that path.
    """
    if path == '':
        return model
    names = dict(model.named_modules())
    if isinstance(path, str) and path in names:
        return names[path]
    raise KeyError(
        f'{key} {path!r}: the {role} ({type(model).__name__}) has no '
        f'submodule with this path. {suggest_paths(model, path)}')


def through_last_stage(model: nn.Module, spec: str) -> str:
    """``spec`` with an element of a list of heads filled in, when only
    that makes it a path of ``model``: the last head that has the rest of
    the path.

    Cascades keep their heads in a ``ModuleList`` and predict with the last
    one: mmseg's OCRNet (``decode_head.1.conv_seg``), mmdet's Cascade R-CNN
    (``roi_head.bbox_head.2.fc_cls``). A preset written for the single-head
    model (``'decode_head.conv_seg'``) then means the final head. When the
    last head has no such module (mmseg's PointRend refines sampled points
    with ``decode_head.1.fc_seg``; its logit map is
    ``decode_head.0.conv_seg``), the last head that has one is meant, at its
    first call (``#0``): in training mmseg's cascades run such a head once
    for its loss and again to feed the next head, and in ``tensor`` mode the
    teacher must stop before a later head it does not need. Paths that
    exist, or that do not exist either way, are returned unchanged.
    """
    if not isinstance(spec, str):
        return spec
    cut = min([i for i in (spec.find(':'), spec.find('#')) if i >= 0],
              default=len(spec))
    path, suffix = spec[:cut], spec[cut:]
    if not path or path in dict(model.named_modules()):
        return spec
    found = _fill_heads(model, path.split('.'))
    if found is None:
        return spec
    done, earlier = found
    if earlier and '#' not in suffix:
        suffix += '#0'
    return '.'.join(done) + suffix


def _fill_heads(module: nn.Module,
                parts: List[str]) -> Optional[Tuple[List[str], bool]]:
    """Path parts of ``parts`` under ``module``, with the index of the last
    fitting element inserted before a part a list of heads lacks, and
    whether an inserted index is not its list's last."""
    if not parts:
        return [], False
    head, rest = parts[0], parts[1:]
    if head in module._modules:
        found = _fill_heads(module._modules[head], rest)
        return None if found is None else ([head] + found[0], found[1])
    if isinstance(module, (nn.ModuleList, nn.Sequential)):
        for i in reversed(range(len(module))):
            found = _fill_heads(module._modules[str(i)], parts)
            if found is not None:
                return [str(i)] + found[0], found[1] or i < len(module) - 1
    return None


def parse_path(spec: str) -> Tuple[str, str, Optional[int]]:
    """Split ``'module.path[:input][#k]'`` into (path, kind, call index).

    ``:input`` records what the module receives instead of what it returns
    (e.g. the pre-ReLU feature: ``'backbone.layer4.2.relu:input'``); ``#k``
    keeps only the k-th call (Python indexing, ``#-1`` is the last) of a
    module called several times in one forward pass.
    """
    m = re.fullmatch(r'([^:#]*)(?::(input|output))?(?:#(-?\d+))?', spec)
    if m is None:
        raise ValueError(f'module path {spec!r} is not of the form '
                         "'a.b.c', 'a.b.c:input' or 'a.b.c:input#-1'")
    path, kind, index = m.groups()
    return path, kind or 'output', None if index is None else int(index)


def _tensors(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


class FeatureRecorder:
    """Collects the outputs of submodules of ``model`` given by dotted paths.

    A module called several times in one forward pass (a head shared over
    FPN levels) yields a tuple of its outputs in call order; a module called
    once yields its output as it is (a tensor, or a tuple for FPN necks).
    Paths follow :func:`parse_path` (``:input``, ``#k``).

    Args:
        model (nn.Module): The model to hook.
        paths (list[str]): Dotted module paths to record.
        role (str): ``'student'`` or ``'teacher'`` (for messages).
    """

    def __init__(self,
                 model: nn.Module,
                 paths: List[str],
                 role: str = 'model') -> None:
        self.paths = list(dict.fromkeys(paths))
        self.role = role
        self.specs = {p: parse_path(p) for p in self.paths}
        self.model = model
        for spec in self.specs.values():  # fail early, naming close paths
            get_submodule(model, spec[0], role, key=f'{role} module path')
        # A path with a call index ('#-1') is complete only once the module
        # that owns it has returned: until then more calls may follow.
        self.owners = {
            p: spec[0].rpartition('.')[0]
            for p, spec in self.specs.items() if spec[2] is not None
        }

    @contextmanager
    def record(self,
               stop_after: Optional[Dict[str, int]] = None) -> Iterator[dict]:
        """Hook the modules for the duration of the ``with`` block.

        Args:
            stop_after (dict, optional): Number of calls expected per path.
                Once every path has been called that often (a path with a
                call index ``#k``: once the module owning it has returned),
                the forward pass is ended by :class:`StopForward`, which
                this context manager swallows.

        Yields:
            dict: Filled on exit with ``path -> output`` (see class doc).
        """
        outputs = {p: [] for p in self.paths}
        owner_done = {p: False for p in self.owners}
        result: dict = {}
        handles = []

        def complete(p):
            index = self.specs[p][2]
            if index is not None and index >= 0:  # no need to wait for more
                return len(outputs[p]) > index
            if p in owner_done:
                return owner_done[p]
            return len(outputs[p]) >= stop_after.get(p, 1)

        def maybe_stop():
            if stop_after is not None and all(map(complete, self.paths)):
                raise StopForward

        versions = []

        def store(path, value):
            outputs[path].append(value)
            versions.extend((path, t, t._version) for t in _tensors(value))
            maybe_stop()

        def owner_returned(path):
            owner_done[path] = True
            maybe_stop()

        def make_hook(path):
            if self.specs[path][1] == 'input':
                # clone: an in-place ReLU would overwrite what it received
                return module_of(path).register_forward_pre_hook(
                    lambda m, args: store(path, args[0].clone()))
            return module_of(path).register_forward_hook(
                lambda m, args, output: store(path, output))

        # Looked up on every call: the Runner may swap modules after build
        # (SyncBN -> BN without distributed training).
        def module_of(path):
            return self.model.get_submodule(self.specs[path][0])

        for path in self.paths:
            handles.append(make_hook(path))
        for path, owner in self.owners.items():
            owner = self.model.get_submodule(owner)
            handles.append(
                owner.register_forward_hook(
                    lambda m, a, o, path=path: owner_returned(path)))
        try:
            yield result
        except StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
            for path, t, version in versions:
                if t._version != version:
                    raise RuntimeError(
                        f'{self.role} module path {path!r}: its output was '
                        'modified in place after it was recorded (e.g. by '
                        "an in-place ReLU or 'out += identity'), so it is "
                        'not the feature it was. Record the input of the '
                        "next module instead, e.g. '<block>.relu:input#-1' "
                        'for the pre-ReLU output of a ResNet block.')
            for p, outs in outputs.items():
                index = self.specs[p][2]
                if index is not None:
                    if -len(outs) <= index < len(outs):
                        result[p] = outs[index]
                elif outs:
                    result[p] = outs[0] if len(outs) == 1 else tuple(outs)
            result['__calls__'] = {p: len(o) for p, o in outputs.items()}
