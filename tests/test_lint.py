"""OpenMMLab's lint set on the source tree (settings in setup.cfg).

Each linter runs as ``python -m <linter>`` on mmkd_channel/, tools/,
tests/ and configs/ and the test fails with its output. A linter that is
not installed is skipped (``pip install -r requirements/tests.txt``
installs them). Fix what they report with::

    yapf -i -r mmkd_channel tools tests configs
    isort mmkd_channel tools tests configs
"""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TARGETS = ['mmkd_channel', 'tools', 'tests', 'configs']

# name -> (importable module, command after `python -m`)
LINTERS = {
    'flake8': ('flake8', ['flake8']),
    'isort': ('isort', ['isort', '--check-only', '--diff']),
    'yapf': ('yapf', ['yapf', '--diff', '-r']),
    'codespell': ('codespell_lib', ['codespell_lib']),
}


@pytest.mark.parametrize('name', list(LINTERS))
def test_lint(name):
    module, command = LINTERS[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f'{name} is not installed (pip install {name})')
    proc = subprocess.run(
        [sys.executable, '-m'] + command + TARGETS,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600)
    output = (proc.stdout + proc.stderr).strip()
    if name == 'codespell':  # it reports the config file it read
        output = '\n'.join(
            line for line in output.splitlines()
            if not line.startswith(('Used config files:', '    1: ')))
    assert proc.returncode == 0 and not (name == 'yapf' and output), (
        f'{name} found problems (exit {proc.returncode}):\n{output}')
