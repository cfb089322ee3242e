"""A clear error when a host API builds a distillation config.

The host toolboxes' inference APIs (mmseg's ``init_model``, ...) expect the
config of a host model and set host-model arguments on ``config.model``
before building it (``pretrained=None``, ``train_cfg=None``). Given a
distillation config they would build the distiller with those arguments and
fail with an unexpected-keyword error that does not say what to do. The
distiller refuses them with the command that exports the student.
"""

#: Arguments the hosts' APIs set on ``config.model``; no distiller takes them.
HOST_MODEL_ARGS = ('pretrained', 'train_cfg', 'test_cfg', 'backbone')

EXPORT_HINT = (
    'Export the student first and give the host API its config: '
    'python tools/model_converters/export_student.py CKPT student.pth '
    '(or: mim run mmkd_channel export_student CKPT student.pth), then e.g. '
    "init_model('student.py', 'student.pth').")


class RefuseHostModelArgs:
    """Mixin: building with host-model arguments raises a ``TypeError``
    naming the export command (checked before ``__init__`` runs)."""

    def __new__(cls, *args, **kwargs):
        given = [k for k in HOST_MODEL_ARGS if k in kwargs]
        if given:
            raise TypeError(
                f'{cls.__name__} got {given}: a host API (mmseg init_model, '
                'mmdet init_detector, ...) is building a distillation config '
                f'as if it were a host model. {EXPORT_HINT}')
        return super().__new__(cls)
