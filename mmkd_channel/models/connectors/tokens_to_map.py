"""Turn a transformer block's tokens into a feature map a CNN can match."""
import math
from typing import Optional, Sequence, Tuple

from torch import Tensor, nn

from mmkd_channel.registry import MODELS

#: Names of patch-embedding modules in mmpretrain / mmcv (``patch_embed``),
#: timm (``patch_embed``) and Hugging Face (``patch_embeddings``).
PATCH_EMBED_NAMES = ('patch_embed', 'patch_embeddings')
#: Attributes giving the number of leading non-patch tokens: mmpretrain
#: (``num_extra_tokens``: class, + distillation for DeiT) and timm
#: (``num_prefix_tokens``: class + register tokens).
EXTRA_TOKEN_ATTRS = ('num_extra_tokens', 'num_prefix_tokens')
#: Largest number of leading tokens guessed from a square token count.
MAX_GUESSED_EXTRA = 8
#: Downsampling factors tried for later stages of hierarchical models
#: (Swin halves the patch grid per stage).
STAGE_FACTORS = (1, 2, 4, 8, 16, 32)


def _common_prefix_len(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split('.'), b.split('.')):
        if x != y:
            break
        n += 1
    return n


def find_patch_embed(model: nn.Module,
                     path: str) -> Tuple[Optional[str], Optional[nn.Module]]:
    """The patch-embedding module serving the module at ``path``.

    Among the modules named like :data:`PATCH_EMBED_NAMES`, the one sharing
    the longest dotted prefix with ``path`` (``backbone.patch_embed`` for
    ``backbone.layers.11``). ``(None, None)`` if there is none.
    """
    best, best_len = (None, None), -1
    for name, module in model.named_modules():
        if name.rpartition('.')[2] in PATCH_EMBED_NAMES:
            n = _common_prefix_len(name, path)
            if n > best_len:
                best, best_len = (name, module), n
    return best


@MODELS.register_module()
class TokensToMap(nn.Module):
    """``(N, L, C)`` tokens -> ``(N, C, H, W)`` map of the patch tokens.

    Use it as ``teacher_connector`` to distill a ViT / DeiT / EVA block (or
    a timm / Hugging Face ViT) into a CNN stage with CWT, CWD or L2: it
    drops the leading class / distillation / register tokens and lays the
    ``H * W`` patch tokens out on their grid. It has no weights.

    Where the numbers come from, first match wins:

    - leading tokens: ``num_extra_tokens`` if given; else the model's
      ``num_extra_tokens`` (mmpretrain) or ``num_prefix_tokens`` (timm),
      read when the distiller binds the connector; else ``L - H * W``.
    - patch grid ``H x W``: ``grid`` if given; else the grid the model's
      patch embedding produced in the current forward pass (recorded by a
      hook on its first convolution, so any input size works), divided by
      1, 2, 4, ... for later stages of hierarchical models such as Swin;
      else a square grid fitted to the token count.

    Leading tokens are assumed to come first, as in mmpretrain, timm and
    Hugging Face ViTs.

    Args:
        num_extra_tokens (int, optional): Leading tokens to drop.
        grid (tuple[int, int], optional): Fixed patch grid ``(H, W)``.

    Examples:
        >>> import torch
        >>> conn = TokensToMap(num_extra_tokens=1)
        >>> conn(torch.rand(2, 1 + 14 * 14, 384)).shape
        torch.Size([2, 384, 14, 14])
    """

    def __init__(self,
                 num_extra_tokens: Optional[int] = None,
                 grid: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        if num_extra_tokens is not None and (type(num_extra_tokens) is not int
                                             or num_extra_tokens < 0):
            raise ValueError('TokensToMap: num_extra_tokens must be an int '
                             f'>= 0, got {num_extra_tokens!r}')
        if grid is not None:
            grid = tuple(grid)
            if len(grid) != 2 or not all(
                    type(v) is int and v > 0 for v in grid):
                raise ValueError('TokensToMap: grid must be (H, W), two '
                                 f'positive ints, got {grid!r}')
        self.num_extra_tokens = num_extra_tokens
        self.grid = grid
        self.model_extra_tokens: Optional[int] = None
        self.patch_embed_path: Optional[str] = None
        self.patch_grid: Optional[Tuple[int, int]] = None
        self._hook = None

    def bind(self,
             student: nn.Module,
             teacher: nn.Module,
             student_path: str,
             teacher_path: str,
             name: str,
             role: str = 'teacher') -> None:
        """Find the patch embedding and extra tokens of the bound model.

        Called by :class:`FeatureDistiller` when it is built; ``role`` says
        whether this is the ``teacher_connector`` (default) or the student
        ``connector``.
        """
        model, path = ((student, student_path) if role == 'student' else
                       (teacher, teacher_path))
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        embed_path, embed = find_patch_embed(model, path.split(':')[0])
        self.patch_embed_path = embed_path
        if embed is None:
            return
        owner = model.get_submodule(embed_path.rpartition('.')[0])
        for attr in EXTRA_TOKEN_ATTRS:
            value = getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                self.model_extra_tokens = value
                break
        conv = next((m for m in embed.modules() if isinstance(m, nn.Conv2d)),
                    None)
        if conv is not None:
            # a bound method, so a deep copy of the model hooks the copy
            self._hook = conv.register_forward_hook(self._record_grid)
        else:
            self._hook = embed.register_forward_hook(self._record_grid)

    def _record_grid(self, module: nn.Module, args, output) -> None:
        if isinstance(output, Tensor) and output.dim() == 4:
            self.patch_grid = tuple(output.shape[-2:])
        elif (isinstance(output, (tuple, list)) and len(output) == 2
              and isinstance(output[1], (tuple, list))):
            self.patch_grid = tuple(int(v) for v in output[1])

    def _extra_and_grid(self, length: int) -> Tuple[int, Tuple[int, int]]:
        extra = self.num_extra_tokens
        if extra is None:
            extra = self.model_extra_tokens
        if self.grid is not None:
            grids = [self.grid]
        elif self.patch_grid is not None:
            h0, w0 = self.patch_grid
            grids = [(math.ceil(h0 / f), math.ceil(w0 / f))
                     for f in STAGE_FACTORS]
        else:
            grids = []
        for h, w in grids:
            n = length - h * w
            if n >= 0 and (extra is None or n == extra):
                return n, (h, w)
        if self.grid is None:
            candidates = [extra] if extra is not None else range(
                min(length, MAX_GUESSED_EXTRA + 1))
            for n in candidates:
                side = math.isqrt(length - n) if length >= n else 0
                if side > 0 and side * side == length - n:
                    return n, (side, side)
        raise ValueError(
            f'TokensToMap: cannot lay {length} tokens out on a patch grid '
            f'(leading tokens: {extra}, grid: {self.grid}, recorded patch '
            f'grid: {self.patch_grid}, patch embedding: '
            f'{self.patch_embed_path}). Give grid=(H, W) and '
            'num_extra_tokens explicitly.')

    def forward(self, feat: Tensor) -> Tensor:
        """``(N, L, C)`` -> ``(N, C, H, W)``."""
        if not isinstance(feat, Tensor) or feat.dim() != 3:
            shape = tuple(feat.shape) if isinstance(
                feat, Tensor) else type(feat).__name__
            raise ValueError(
                'TokensToMap expects (N, L, C) tokens of a transformer '
                f'block, got {shape}. A module that already gives (N, C, H, '
                'W) maps needs no TokensToMap.')
        n, length, c = feat.shape
        extra, (h, w) = self._extra_and_grid(length)
        return feat[:, extra:].transpose(1, 2).reshape(n, c, h, w)
