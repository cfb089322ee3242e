"""One distillation term: the student and teacher module paths, their
connectors and the loss that compares the connected features."""
from typing import List, Optional, Tuple

from torch import Tensor, nn

from ..connectors.base import ChannelConnector
from ..connectors.spatial_align import (align_hint, call_connector,
                                        spatial_sizes)
from .host_models import build_own
from .pair_check import connectors_of, unwrap_single
from .teachers import SINGLE


class DistillPair(nn.Module):
    """One distillation term: modules to compare, connectors and a loss."""

    def __init__(self,
                 name: str,
                 student: str,
                 teacher: str,
                 connector,
                 teacher_connector,
                 loss,
                 teacher_model: str = SINGLE) -> None:
        super().__init__()
        self.name = name
        self.teacher_model = teacher_model
        self.student_path = student
        self.teacher_path = teacher
        self.connector = self._build_connector(connector, 'connector')
        self.teacher_connector = self._build_connector(teacher_connector,
                                                       'teacher_connector')
        self.loss = build_own(loss, f"distill['{name}'].loss")

    def _build_connector(self, cfg, key):
        what = f"distill['{self.name}'].{key}"
        if isinstance(cfg, (list, tuple)):
            return nn.ModuleList(
                build_own(c, f'{what}[{i}]') for i, c in enumerate(cfg))
        return build_own(cfg, what)

    @staticmethod
    def _connect(connector, feat, size=None):
        """Apply the connector(s); ``size``: the teacher's ``H x W`` (per
        level for tuples), used by connectors with ``align``."""
        if connector is None:
            return feat
        if isinstance(feat, (tuple, list)):
            sizes = size if isinstance(size, tuple) and len(size) == len(
                feat) else (None, ) * len(feat)
            if isinstance(connector, nn.ModuleList):
                if len(connector) != len(feat):
                    raise ValueError(
                        f'{len(connector)} connectors for {len(feat)} '
                        'feature levels')
                return tuple(
                    call_connector(c, f, z)
                    for c, f, z in zip(connector, feat, sizes))
            return tuple(
                call_connector(connector, f, z) for f, z in zip(feat, sizes))
        if isinstance(connector, nn.ModuleList):
            raise ValueError('a list of connectors needs a tuple of features')
        return call_connector(connector, feat, size)

    def unbuilt(self) -> List[Tuple[str, ChannelConnector]]:
        """``(key, connector)`` of the connectors still missing widths."""
        return [(key, c) for key in ('connector', 'teacher_connector')
                for c in connectors_of(getattr(self, key))
                if isinstance(c, ChannelConnector) and not c.is_built]

    def forward(self,
                student_feat,
                teacher_feat,
                data_samples: Optional[list] = None) -> Tensor:
        # Losses whose forward names `data_samples` (SAKD) also get the
        # batch's data samples; every other loss gets the two features.
        from ..losses.loss_inputs import call_loss
        student_feat, teacher_feat = unwrap_single(student_feat, teacher_feat)
        # teacher first: its H x W is the target of the student's `align`
        t = self._connect(self.teacher_connector, teacher_feat)
        s = self._connect(self.connector, student_feat, spatial_sizes(t))
        return call_loss(self.loss, s, t, data_samples)

    def align_hint(self, student_feat, teacher_feat) -> str:
        """Suggest ``align`` when the connected features differ only in
        ``H x W``; ``''`` otherwise."""
        try:
            s = self._connect(self.connector, student_feat)
            t = self._connect(self.teacher_connector, teacher_feat)
        except Exception:
            return ''
        return align_hint(s, t)


def with_context(error: Exception, desc: str) -> Exception:
    """``error`` re-created with ``desc`` (the pair, paths and shapes)."""
    if isinstance(error, (ValueError, RuntimeError)):
        return ValueError(f'{desc}: {error}')
    msg = f'{desc}: {type(error).__name__}: {error}'
    try:
        return type(error)(msg)
    except Exception:  # exception types with other constructors
        return RuntimeError(msg)
