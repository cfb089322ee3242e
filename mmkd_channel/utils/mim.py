"""Make ``mmkd_channel::path/to/config.py`` resolve like ``mmdet::...``.

MMEngine maps a ``package::`` prefix to an installed package and reads
``<package>/.mim/configs``. Our package ships ``mmkd_channel/.mim/configs``
(a link to the repository's ``configs/`` in a source checkout, a copy in a
built wheel); this module registers the scope name and points MMEngine at
this package's own directory, which also works for editable installs.
"""
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def register_mim_scope() -> None:
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils
    from mmengine.hub import hub as hub_module
    config_utils.MODULE2PACKAGE.setdefault('mmkd_channel', 'mmkd_channel')
    # both Config (for _base_) and mmengine.hub.get_config look it up
    for module in (config_module, hub_module):
        original = module.get_installed_path
        if getattr(original, '_mmkd_channel', False):
            continue
        module.get_installed_path = _patched(original)


def _patched(original):

    def get_installed_path(package: str) -> str:
        if package == 'mmkd_channel':
            return PACKAGE_DIR
        return original(package)

    get_installed_path._mmkd_channel = True
    return get_installed_path


def resolve_config_path(path: str) -> str:
    """Turn ``'mmdet::faster_rcnn/x.py'`` into the file's absolute path.

    Local paths are returned unchanged. Raises ``FileNotFoundError`` naming
    the package folder that was searched.
    """
    if '::' not in path:
        return path
    from mmengine.config import config as config_module
    from mmengine.config.utils import _get_package_and_cfg_path
    try:
        package, rel = _get_package_and_cfg_path(path)
    except (ValueError, AssertionError) as e:
        raise FileNotFoundError(f'{path!r}: {e}') from None
    try:
        root = config_module.get_installed_path(package)
    except Exception as e:  # DistributionNotFound and friends
        raise FileNotFoundError(
            f'{path!r}: package {package!r} is not installed ({e})') from None
    full = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(
            f'{path!r}: no such config in {osp.join(root, ".mim", "configs")}')
    return full
