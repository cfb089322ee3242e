"""``mim train|test|run|search mmkd_channel`` find our tools, configs and
model index under ``mmkd_channel/.mim``, as mim does for mmdet.

Two installs are exercised, each from a copy of this repository (so the
worktree gets no build files) put first on ``PYTHONPATH``:

* ``wheel``: a wheel built from the copy, installed into a throwaway
  directory (``.mim`` holds copies);
* ``develop``: the source tree with its metadata in place, the layout of
  ``python setup.py develop`` (``.mim`` holds links to the repository's
  folders).

mim resolves a package to ``<distribution location>/mmkd_channel``; a PEP
660 editable install records ``site-packages`` as its location, where
there is no such folder (see docs/host_tools.md). Each command runs in a
subprocess on the toy distillation task.
"""
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmkd_toy import HERE, REPO, toy_config

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('mim') is None,
    reason='openmim is not installed in this environment')

COPY_IGNORE = shutil.ignore_patterns('.git', '.venv', 'work_dirs', 'data',
                                     'build', 'dist', '*.egg-info',
                                     '__pycache__', '*.pyc', '.pytest_cache')


def mim_env(first: str) -> dict:
    """An environment whose ``mmkd_channel`` is the one under ``first``.

    The toy task's module (``mmkd_toy``) is importable too.
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([first, HERE])
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def mim(args, env, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, '-m', 'mim'] + list(args),
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    return proc


def model_names() -> list:
    """Model names of the metafiles model-index.yml lists."""
    import yaml
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    names = []
    for entry in index['Import']:
        with open(osp.join(REPO, entry)) as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    return names


def source_copy(tmp) -> str:
    src = str(tmp / 'src')
    shutil.copytree(REPO, src, symlinks=True, ignore=COPY_IGNORE)
    return src


@pytest.fixture(scope='module')
def develop_tree(tmp_path_factory) -> str:
    """A source tree with its egg-info in place, as ``setup.py develop``
    leaves it (which also puts the tree on ``sys.path``)."""
    src = source_copy(tmp_path_factory.mktemp('mim_develop'))
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info'],
                   cwd=src,
                   check=True,
                   capture_output=True,
                   timeout=300)
    return src


@pytest.fixture(scope='module')
def wheel_site(tmp_path_factory) -> str:
    """A directory holding mmkd_channel installed from a freshly built
    wheel."""
    tmp = tmp_path_factory.mktemp('mim_wheel')
    src = source_copy(tmp)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(
        pip + [
            'wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
            str(tmp / 'dist'), src
        ],
        check=True,
        capture_output=True,
        timeout=300)
    (wheel, ) = os.listdir(tmp / 'dist')
    subprocess.run(
        pip + [
            'install', '-q', '--no-deps', '--no-compile', '--target',
            str(tmp / 'site'),
            str(tmp / 'dist' / wheel)
        ],
        check=True,
        capture_output=True,
        timeout=300)
    return str(tmp / 'site')


@pytest.fixture(params=['wheel', 'develop'])
def install(request, tmp_path) -> dict:
    if request.param == 'wheel':
        root = request.getfixturevalue('wheel_site')
    else:
        root = request.getfixturevalue('develop_tree')
    env = mim_env(root)
    # the mmkd_channel that runs is the one of this install
    where = subprocess.run([
        sys.executable, '-c', 'import mmkd_channel; print(mmkd_channel.'
        '__file__)'
    ],
                           cwd=str(tmp_path),
                           env=env,
                           capture_output=True,
                           text=True,
                           check=True).stdout.strip()
    assert where.startswith(osp.join(root, 'mmkd_channel')), where
    return dict(root=root, env=env, kind=request.param)


def test_search_lists_the_model_index(install, tmp_path):
    proc = mim(['search', 'mmkd_channel'], install['env'], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = model_names()
    assert names
    for name in names:
        assert name in proc.stdout, (name, proc.stdout[-2000:])


def test_train_test_and_run_export(install, tmp_path):
    env = install['env']
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1)
    cfg_path = str(tmp_path / 'toy.py')
    cfg.dump(cfg_path)
    script_dir = osp.join(install['root'], 'mmkd_channel', '.mim', 'tools')

    proc = mim([
        'train', 'mmkd_channel', cfg_path, '--work-dir',
        str(tmp_path / 'work')
    ], env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    assert ckpt.is_file()

    proc = mim([
        'test', 'mmkd_channel', cfg_path, '--checkpoint',
        str(ckpt), '--work-dir',
        str(tmp_path / 'test')
    ], env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'accuracy' in proc.stdout + proc.stderr

    out = tmp_path / 'student.pth'
    proc = mim(['run', 'mmkd_channel', 'export_student',
                str(ckpt),
                str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert out.is_file() and (tmp_path / 'student.py').is_file()
    used = osp.join(script_dir, 'model_converters', 'export_student.py')
    assert f'Use the script {used}' in proc.stdout, proc.stdout[-2000:]
