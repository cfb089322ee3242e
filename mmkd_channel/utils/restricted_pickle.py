"""A pickle module that rebuilds data and never imports or calls anything
else.

Passed as ``pickle_module`` to ``torch.load`` it reads any PyTorch
checkpoint for its weights. Tensors, builtin containers and an allowlist
(torch's own ``weights_only`` allowlist, MMEngine's ``HistoryBuffer``,
numpy arrays and dtypes) are rebuilt as usual. Every other global the file
names (``builtins.getattr``, ``posix.system``, a user's class ...) becomes
an :class:`Inert` placeholder: nothing is imported to find it, and the
opcodes that would call or build it (``REDUCE``, ``NEWOBJ``,
``NEWOBJ_EX``, ``INST``, ``OBJ``, ``BUILD``) produce another placeholder
instead of running anything. Calling a placeholder later also returns a
placeholder.

The unpickler is Python's own pure-Python one with those opcodes
overridden; all other opcodes only build strings, numbers and containers.
"""
import _compat_pickle
import collections
import pickle
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Set

import numpy as np
import torch

__all__ = ['Inert', 'Unpickler', 'load', 'collect_replaced']


class Inert:
    """Stands for a global (or a call of one) that was never imported.

    Args:
        name (str): Dotted name of the global, e.g. ``'posix.system'``.
    """

    __slots__ = ('name', )

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args, **kwargs) -> 'Inert':
        return Inert(f'{self.name}(...)')

    def __repr__(self) -> str:
        return f'<inert {self.name}>'

    # targets of APPEND(S) / SETITEM(S) / ADDITEMS: accept and drop
    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _numpy_globals() -> Dict[str, Any]:
    try:
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy >= 2 without the legacy alias
        from numpy._core.multiarray import _reconstruct, scalar
    found: Dict[str, Any] = {
        'numpy.ndarray': np.ndarray,
        'numpy.dtype': np.dtype
    }
    # numpy 1 writes numpy.core.*, numpy 2 numpy._core.*: accept both
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found[f'{mod}._reconstruct'] = _reconstruct
        found[f'{mod}.scalar'] = scalar
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for n in dir(dtypes):
            if n.endswith('DType'):
                found[f'numpy.dtypes.{n}'] = getattr(dtypes, n)
    return found


def allowed_globals() -> Dict[str, Any]:
    """Dotted name -> object of every global that is rebuilt for real."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        found = dict(_get_allowed_globals())
    except ImportError:  # a torch without it: the essentials
        rebuild = torch._utils
        found = {
            f'torch._utils.{f.__name__}': f
            for f in (rebuild._rebuild_tensor_v2, rebuild._rebuild_parameter)
        }
    for obj in (frozenset, slice, range):
        found[f'builtins.{obj.__name__}'] = obj
    for obj in (collections.OrderedDict, collections.Counter):
        found[f'collections.{obj.__name__}'] = obj
    found['mmengine.logging.history_buffer.HistoryBuffer'] = HistoryBuffer
    found.update(_numpy_globals())
    for obj in torch.serialization.get_safe_globals():  # user allowlist
        if isinstance(obj, tuple):
            found[obj[1]] = obj[0]
        else:
            found[f'{obj.__module__}.{obj.__qualname__}'] = obj
    return found


_local = threading.local()


@contextmanager
def collect_replaced() -> Iterator[Set[str]]:
    """Collect the names replaced by placeholders while the block runs."""
    names: Set[str] = set()
    stack: List[Set[str]] = getattr(_local, 'stack', [])
    _local.stack = stack
    stack.append(names)
    try:
        yield names
    finally:
        stack.pop()


def _record(name: str) -> None:
    for names in getattr(_local, 'stack', []):
        names.add(name)


class Unpickler(pickle._Unpickler):
    """Python's unpickler with every code-running opcode made inert.

    Same constructor as :class:`pickle.Unpickler`; ``persistent_load`` is
    set by ``torch.load`` (tensor storages).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, **kwargs) -> None:
        super().__init__(file, **kwargs)
        self._allowed = allowed_globals()
        self._allowed_ids = {id(v) for v in self._allowed.values()}
        self._classes = tuple(v for v in self._allowed.values()
                              if isinstance(v, type))

    # -- globals ----------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full = f'{module}.{name}'
        if full in self._allowed:
            return self._allowed[full]
        _record(full)
        return Inert(full)

    def _is_allowed(self, obj: Any) -> bool:
        return id(obj) in self._allowed_ids and not isinstance(obj, Inert)

    def _inert_result(self, func: Any) -> Inert:
        name = func.name if isinstance(func, Inert) else \
            f'a {type(func).__name__} object'
        if not isinstance(func, Inert):
            _record(f'call of {name}')
        return Inert(f'{name}(...)')

    # -- opcodes that call or build something -------------------------------
    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if self._is_allowed(func) and isinstance(args, tuple):
            self.stack[-1] = func(*args)
        else:
            self.stack[-1] = self._inert_result(func)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if self._is_allowed(cls) and isinstance(cls, type):
            self.append(cls.__new__(cls, *args))
        else:
            self.append(self._inert_result(cls))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if self._is_allowed(cls) and isinstance(cls, type):
            self.append(cls.__new__(cls, *args, **kwargs))
        else:
            self.append(self._inert_result(cls))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _instantiate(self, klass: Any, args: tuple) -> None:
        if self._is_allowed(klass):
            super()._instantiate(klass, args)
        else:
            self.append(self._inert_result(klass))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Inert):
            return
        from mmengine.logging.history_buffer import HistoryBuffer
        if type(inst) is HistoryBuffer and isinstance(state, dict):
            # MMEngine pickles its statistics functions (as getattr calls,
            # now placeholders); ``__setstate__`` would copy them into the
            # class-level table. The class restores its own defaults.
            state = dict(state)
            state.pop('statistics_methods', None)
        if not isinstance(inst, self._classes + (torch.Tensor, np.generic)):
            raise pickle.UnpicklingError(
                f'BUILD of a {type(inst).__name__} object is not supported')
        self.stack.append(state)
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def load(file, **kwargs) -> Any:
    """``pickle.load`` with :class:`Unpickler`."""
    return Unpickler(file, **kwargs).load()
