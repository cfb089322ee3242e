"""Make the toy task of tests/test_tools importable (``import mmkd_toy``)."""
import os.path as osp
import sys

TOOLS_TESTS = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_tools')
if TOOLS_TESTS not in sys.path:
    sys.path.insert(0, TOOLS_TESTS)
