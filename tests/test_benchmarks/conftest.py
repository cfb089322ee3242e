"""The benchmark harness lives in ``tools/benchmarks`` (outside the
package): its ``mmkd_bench`` modules are imported from there, as its
scripts do."""
import importlib.util
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HARNESS = osp.join(REPO, 'tools', 'benchmarks')
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)


def load_script(name: str):
    """Import ``tools/benchmarks/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(HARNESS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
