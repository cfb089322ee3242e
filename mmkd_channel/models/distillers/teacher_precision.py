"""Run the frozen teacher in bf16 / fp16 and channels-last layout.

The teacher only provides targets, and its forward pass is most of what
distillation adds to a training step. :class:`TeacherPrecision` converts
the teacher once (after its checkpoint is loaded): each BatchNorm that
directly follows a convolution is folded into that convolution (in fp32,
checked numerically on a dummy input), the remaining BatchNorms keep
their parameters and running statistics in fp32, and everything else is
cast to the chosen dtype (and 4-D weights to channels-last). Inputs are
cast on the way in; the recorded features are cast back to the student's
dtype (contiguous) before connectors and losses see them.

Folding matters on CPU: measured on torchvision's ResNet-101 body (2 x 3 x
256 x 256, 2 threads, AVX512-BF16/AMX) a bf16 channels-last pass took
304 ms with BN kept in fp32 and 191 ms with BN folded (fp32: 707 ms), and
its output was closer to fp32 (relative error 0.9e-2 instead of 1.3e-2),
because the folded BN adds no rounding step of its own.
"""
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Set, Tuple

import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
CHOICES = tuple(DTYPES) + ('auto', )
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: a folded conv + BN must reproduce the unfolded fp32 features this well
FOLD_RTOL = 1e-4


def cpu_bf16_flags() -> List[str]:
    """The CPU flags of ``/proc/cpuinfo`` that make bf16 fast
    (``avx512_bf16``, ``amx_bf16``); empty if none or not readable."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    return sorted(flags & {'avx512_bf16', 'amx_bf16'})
    except OSError:
        pass
    return []


def choose_auto_dtype() -> Tuple[str, str]:
    """What ``teacher_dtype='auto'`` means on this machine, and why.

    bf16 on a CUDA device that supports it, or on a CPU with AVX512-BF16
    or AMX (and oneDNN in torch); fp32 elsewhere (fp16 is never chosen:
    its range can overflow in deep teachers).

    Returns:
        tuple[str, str]: ``('bf16' | 'fp32', reason)``.
    """
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return 'bf16', f'CUDA device {name!r} supports bf16'
        return 'fp32', f'CUDA device {name!r} has no bf16 support'
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_bf16_flags()
    if not flags:
        return 'fp32', (f'CPU has no avx512_bf16/amx_bf16 flag (torch CPU '
                        f'capability {capability}), bf16 would be emulated')
    if not torch.backends.mkldnn.is_available():
        return 'fp32', (f'CPU has {"/".join(flags)} but this torch has no '
                        'oneDNN, whose kernels use them')
    return 'bf16', (f'CPU has {"/".join(flags)} (torch CPU capability '
                    f'{capability}, oneDNN available)')


def cast_tensors(value, dtype: torch.dtype):
    """Floating tensors in a (nested tuple / list / dict of) ``value`` cast
    to ``dtype`` in contiguous layout; anything else as it is."""
    if isinstance(value, Tensor):
        if value.is_floating_point():
            return value.to(dtype, memory_format=torch.contiguous_format)
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(cast_tensors(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: cast_tensors(v, dtype) for k, v in value.items()}
    return value


class _FoldedBN(nn.Identity):
    """Stands where a BatchNorm was, after it was folded into ``conv``.

    Keeps the module path, so hooks on it still see the BN's output.
    """

    def __init__(self, conv: str) -> None:
        super().__init__()
        self.folded_into = conv

    def extra_repr(self) -> str:
        return f'folded into {self.folded_into!r}'


class TeacherPrecision:
    """The teacher's dtype and memory layout, and how to get there.

    Args:
        dtype (str): ``'fp32'``, ``'bf16'``, ``'fp16'`` or ``'auto'`` (see
            :func:`choose_auto_dtype`).
        channels_last (bool): Run the teacher in channels-last layout.

    Raises:
        ValueError / TypeError: naming ``teacher_dtype`` or
            ``teacher_channels_last`` and the accepted values.
    """

    def __init__(self, dtype: str = 'fp32', channels_last: bool = False):
        if dtype not in CHOICES:
            raise ValueError(
                f'FeatureDistiller: teacher_dtype={dtype!r} is not one of '
                f'{list(CHOICES)}. Use teacher_dtype=\'bf16\' (or \'auto\' '
                'to choose by hardware), or \'fp32\' to keep the teacher '
                'as it is.')
        if not isinstance(channels_last, bool):
            raise TypeError(
                'FeatureDistiller: teacher_channels_last must be True or '
                f'False, got {channels_last!r}.')
        self.requested = dtype
        self.reason = 'set in the config'
        if dtype == 'auto':
            dtype, self.reason = choose_auto_dtype()
        self.name = dtype
        self.dtype = DTYPES[dtype]
        self.channels_last = channels_last
        self.folded: Dict[str, str] = {}  # BN path -> conv path

    @property
    def active(self) -> bool:
        """False for fp32 + default layout: the teacher is left untouched."""
        return self.dtype != torch.float32 or self.channels_last

    def __repr__(self) -> str:
        return (f'TeacherPrecision({self.name}, channels_last='
                f'{self.channels_last}, {len(self.folded)} BN folded)')

    # ------------------------------------------------------------------ #
    # conversion
    def convert(self,
                teacher: nn.Module,
                trace: Optional[Callable[[], dict]] = None,
                protected: Tuple[Set[str], Set[str]] = (set(), set())):
        """Convert ``teacher`` in place, once (after its weights are
        loaded).

        Args:
            teacher (nn.Module): The frozen teacher, in fp32.
            trace (callable, optional): Runs the teacher as the distiller
                does (e.g. on a dummy input) and returns its recorded
                features. Used to find which BatchNorm reads which conv's
                output and to check the folding; ``None`` (or a trace that
                raises) folds nothing and keeps every BN in fp32.
            protected (tuple[set, set]): Module paths whose *output* and
                whose *input* are recorded; folding leaves a conv whose
                output, or a BN whose input, is recorded alone.
        """
        logger = MMLogger.get_current_instance()
        if self.requested == 'auto':
            logger.info(f'FeatureDistiller: teacher_dtype=auto chose '
                        f'{self.name}: {self.reason}.')
        if not self.active:
            return
        if trace is not None:
            self._fold_bn(teacher, trace, protected, logger)
        self.restore(teacher)
        kept = sum(isinstance(m, _BatchNorm) for m in teacher.modules())
        logger.info(
            f'FeatureDistiller: the teacher runs in {self.name}'
            f'{", channels-last" if self.channels_last else ""}; '
            f'{len(self.folded)} BatchNorm layers folded into their convs, '
            f'{kept} kept in fp32.')

    def apply(self, teacher: nn.Module, fn: Callable[[Tensor], Tensor], *args,
              **kwargs) -> None:
        """``teacher._apply(fn)`` for the distiller's ``_apply``: a
        converted teacher follows ``.to(device)`` / ``.cuda()``, but not
        the casts of ``.half()`` / ``.float()`` / ``.to(dtype)``.

        A cast is not undone afterwards but never applied: fp32 tensors
        (unfolded BNs, an fp32 channels-last teacher) sent through fp16
        and back would come back rounded.
        """
        if not self.active:
            teacher._apply(fn, *args, **kwargs)
            return

        def move(t: Tensor) -> Tensor:
            moved = fn(t)
            if moved.dtype != t.dtype:  # a cast: take only its device
                moved = t.to(moved.device)
            return moved

        teacher._apply(move, *args, **kwargs)
        self.restore(teacher)

    def restore(self, teacher: nn.Module) -> None:
        """Cast the teacher's tensors to its dtype and layout (unfolded
        BNs: fp32), e.g. after a move."""
        if not self.active:
            return
        keep = {
            id(t)
            for m in teacher.modules() if isinstance(m, _BatchNorm)
            for t in list(m.parameters(False)) + list(m.buffers(False))
        }

        def cast(t: Tensor) -> Tensor:
            if not t.is_floating_point():
                return t
            dtype = torch.float32 if id(t) in keep else self.dtype
            if self.channels_last and t.dim() == 4:
                return t.to(dtype, memory_format=torch.channels_last)
            return t.to(dtype)

        teacher._apply(cast)

    def _fold_bn(self, teacher, trace, protected, logger) -> None:
        try:
            pairs, reference = self._find_pairs(teacher, trace, protected)
        except Exception as e:  # host model needs real data samples
            logger.info('FeatureDistiller: could not trace the teacher on a '
                        f'dummy input ({type(e).__name__}: {e}); its '
                        'BatchNorms are kept in fp32, not folded.')
            return
        modules = dict(teacher.named_modules())
        saved = []
        for conv_path, bn_path in pairs:
            conv, bn = modules[conv_path], modules[bn_path]
            saved.append((conv, conv.weight.data, conv.bias, bn_path, bn))
            _fold_into(conv, bn)
            teacher.set_submodule(bn_path, _FoldedBN(conv_path))
        with torch.no_grad():
            folded = trace()
        bad = _mismatch(reference, folded)
        if bad:
            for conv, weight, bias, bn_path, bn in saved:
                conv.weight.data = weight
                conv.bias = bias
                teacher.set_submodule(bn_path, bn)
            logger.warning(
                'FeatureDistiller: folding the teacher\'s BatchNorms into '
                f'their convs changed the recorded feature(s) {bad}; they '
                'are kept unfolded, in fp32.')
            return
        self.folded = {bn: conv for conv, bn in pairs}

    @staticmethod
    def _find_pairs(teacher: nn.Module, trace: Callable[[], dict],
                    protected: Tuple[Set[str], Set[str]]) -> tuple:
        """(conv, BN) paths where the BN only ever reads that conv's
        output and that conv's output only goes to that BN, and the
        features the traced (unconverted) teacher recorded."""
        outputs_recorded, inputs_recorded = protected
        produced: Dict[int, str] = {}
        keep_alive = []
        conv_calls: Dict[str, int] = {}
        bn_sources: Dict[str, list] = {}
        handles = []

        def conv_hook(name):

            def hook(module, args, output):
                conv_calls[name] = conv_calls.get(name, 0) + 1
                produced[id(output)] = name
                keep_alive.append(output)

            return hook

        def bn_hook(name):

            def hook(module, args):
                bn_sources.setdefault(name,
                                      []).append(produced.get(id(args[0])))

            return hook

        for name, m in teacher.named_modules():
            if isinstance(m, _CONVS) and m.padding_mode == 'zeros' \
                    and name not in outputs_recorded:
                handles.append(m.register_forward_hook(conv_hook(name)))
            elif (isinstance(m, _BatchNorm) and m.track_running_stats
                  and m.running_var is not None
                  and name not in inputs_recorded):
                handles.append(m.register_forward_pre_hook(bn_hook(name)))
        try:
            with torch.no_grad():
                reference = trace()
        finally:
            for h in handles:
                h.remove()
        modules = dict(teacher.named_modules())
        readers: Dict[str, int] = {}
        pairs = []
        for bn, sources in bn_sources.items():
            conv = sources[0]
            if conv is None or any(s != conv for s in sources):
                continue
            if len(sources) != conv_calls[conv] or \
                    modules[conv].out_channels != modules[bn].num_features:
                continue
            readers[conv] = readers.get(conv, 0) + 1
            pairs.append((conv, bn))
        return [(c, b) for c, b in pairs if readers[c] == 1], reference

    # ------------------------------------------------------------------ #
    # running
    def forward_context(self, device_type: str):
        """Autocast off while a converted teacher runs: it runs in its own
        dtype, not in the one AMP picks for the student."""
        if not self.active:
            return nullcontext()
        return torch.autocast(device_type, enabled=False)

    def cast_inputs(self, inputs):
        """The teacher's inputs in its dtype and layout."""
        if not self.active:
            return inputs
        if isinstance(inputs, (tuple, list)):
            return type(inputs)(self.cast_inputs(x) for x in inputs)
        if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            return inputs
        if self.channels_last and inputs.dim() == 4:
            return inputs.to(self.dtype, memory_format=torch.channels_last)
        return inputs.to(self.dtype)

    def cast_features(self, features: dict, dtype: torch.dtype) -> dict:
        """Recorded features back in ``dtype`` (the student's), contiguous."""
        if not self.active:
            return features
        return {k: cast_tensors(v, dtype) for k, v in features.items()}


def _fold_into(conv: nn.Module, bn: _BatchNorm) -> None:
    """``bn(conv(x)) == conv'(x)`` for an eval-mode BN, computed in fp64."""
    w = conv.weight.detach().double()
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    shift = -mean * scale
    if bn.affine:
        scale = scale * bn.weight.detach().double()
        shift = shift * bn.weight.detach().double() + bn.bias.detach().double()
    if conv.bias is not None:
        shift = shift + conv.bias.detach().double() * scale
    shape = (-1, ) + (1, ) * (w.dim() - 1)
    conv.weight.data = (w * scale.view(shape)).to(conv.weight.dtype)
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def _mismatch(reference: dict, other: dict) -> List[str]:
    """Paths whose features differ by more than :data:`FOLD_RTOL`."""
    from ..losses.base import as_tensor_list
    bad = []
    for path, ref in reference.items():
        if path == '__calls__':
            continue
        a, b = as_tensor_list(ref), as_tensor_list(other.get(path, ()))
        if len(a) != len(b):
            bad.append(path)
            continue
        for x, y in zip(a, b):
            if not x.is_floating_point():
                continue
            err = (x.double() - y.double()).norm()
            if not err <= FOLD_RTOL * x.double().norm().clamp_min(1e-12):
                bad.append(path)
                break
    return bad
