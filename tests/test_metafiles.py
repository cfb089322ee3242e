"""model-index.yml and configs/*/metafile.yml agree with configs/, the hosts'
model zoos and the per-method READMEs.

Every shipped config (all of ``configs/`` except ``_base_``) must be a model of
some metafile, every metafile entry must point to an existing config, and
MMEngine must find the index through ``mmkd_channel/.mim``. A new config folder
therefore fails here until its metafile is written and imported by ``model-
index.yml``. Entries follow MMRazor's form: ``Metadata.Teacher`` /
``Metadata.Student`` hold ``Config``, ``Weights`` and ``Metrics`` (checked
against the config itself and the host's own metafile; a config with
``teachers=dict(name=dict(config=..., ckpt=...))`` has ``Metadata.Teachers``,
one such entry per name), ``Results`` hold the
distilled student's absolute published numbers (checked against the
method's README, which cites them).
"""
import ast
import functools
import glob
import os.path as osp
import re
from numbers import Number

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HOSTS = ('mmdet', 'mmseg', 'mmpretrain')
DISTILL_PREFIXES = ('cwt_', 'cwd_', 'ofd_', 'sakd_', 'kd_')


def load(path):
    with open(osp.join(REPO, path)) as f:
        return yaml.safe_load(f)


def shipped_configs():
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, REPO) for p in paths
        if '_base_' not in osp.relpath(p, REPO).split(osp.sep))


def metafile_paths():
    return load('model-index.yml')['Import']


def all_models():
    return [(mf, m) for mf in metafile_paths()
            for m in load(mf).get('Models', [])]


def distill_models():
    return [(mf, m) for mf, m in all_models()
            if osp.basename(m['Config']).startswith(DISTILL_PREFIXES)]


def config_facts(path):
    """First ``_base_`` entry, ``model.teacher``, ``model.teacher_ckpt``
    and ``model.teachers`` (``name -> {'config', 'ckpt'}``).

    Read from the file's syntax tree, so nothing is imported or downloaded.
    """
    with open(osp.join(REPO, path)) as f:
        tree = ast.parse(f.read())
    facts = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        name = getattr(node.targets[0], 'id', None)
        if name == '_base_':
            bases = node.value
            first = bases.elts[0] if isinstance(bases, ast.List) else bases
            base = first.value
            if '::' not in base:  # relative to the config's folder
                base = osp.normpath(osp.join(osp.dirname(path), base))
            facts['base'] = base
        elif name == 'model' and isinstance(node.value, ast.Call):
            for kw in node.value.keywords:
                if kw.arg in ('teacher', 'teacher_ckpt') and isinstance(
                        kw.value, ast.Constant):
                    facts[kw.arg] = kw.value.value
                elif kw.arg == 'teachers' and isinstance(kw.value, ast.Call):
                    facts['teachers'] = {
                        t.arg: {
                            k.arg: k.value.value
                            for k in t.value.keywords
                            if isinstance(k.value, ast.Constant)
                        }
                        for t in kw.value.keywords
                    }
    return facts


@functools.lru_cache(maxsize=None)
def host_zoo(package):
    """``{config path: metafile entry}`` of a host's own model index."""
    mod = pytest.importorskip(package)
    mim = osp.join(osp.dirname(mod.__file__), '.mim')
    with open(osp.join(mim, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    zoo = {}
    for metafile in imports:
        with open(osp.join(mim, metafile)) as f:
            for model in yaml.safe_load(f).get('Models') or []:
                zoo[model.get('Config')] = model
    return zoo


def host_zoo_entry(ref):
    """The host metafile entry of ``mmdet::x/y.py`` (skip without host)."""
    package, rel = ref.split('::', 1)
    return host_zoo(package).get(f'configs/{rel}')


def readme_numbers(metafile):
    """Every number written in the README beside ``metafile``."""
    with open(osp.join(REPO, osp.dirname(metafile), 'README.md')) as f:
        return {float(x) for x in re.findall(r'\d+\.\d+', f.read())}


def test_index_imports_every_metafile():
    imports = metafile_paths()
    assert len(imports) == len(set(imports)), 'duplicate Import entries'
    for path in imports:
        assert osp.isfile(osp.join(REPO, path)), f'{path} does not exist'
        assert path.startswith('configs/') and path.endswith(
            '/metafile.yml'), path
    on_disk = sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))
    missing = sorted(set(on_disk) - set(imports))
    assert not missing, f'model-index.yml does not import {missing}'


def test_every_config_has_a_metafile_entry():
    listed = {m.get('Config') for _, m in all_models()}
    missing = [c for c in shipped_configs() if c not in listed]
    assert not missing, (
        'configs without a metafile entry (add them to '
        'configs/<method>/metafile.yml and import that file in '
        f'model-index.yml): {missing}')


def test_every_entry_points_to_an_existing_config():
    names = []
    for metafile, model in all_models():
        cfg = model.get('Config')
        assert cfg, f'{metafile}: model {model.get("Name")} has no Config'
        assert osp.isfile(osp.join(REPO, cfg)), \
            f'{metafile}: {model["Name"]}: {cfg} does not exist'
        assert osp.dirname(cfg) == osp.dirname(metafile), \
            f'{metafile} lists {cfg} of another folder'
        # OpenMMLab convention: the model name is the config name
        assert model['Name'] == osp.splitext(osp.basename(cfg))[0]
        names.append(model['Name'])
    assert len(names) == len(set(names)), 'duplicate model names'


def test_collections_and_fields():
    collections = {}
    for metafile in metafile_paths():
        data = load(metafile)
        for col in data.get('Collections', []):
            where = f'{metafile}: collection {col.get("Name")}'
            for key in ('Name', 'Metadata', 'Paper', 'README'):
                assert key in col, f'{where} has no {key}'
            assert col['Paper'].get(
                'Title') and col['Paper']['URL'].startswith('https://'), where
            # OpenMMLab: README relative to the repository, one per method
            assert col['README'] == osp.join(
                osp.dirname(metafile), 'README.md'), where
            assert osp.isfile(osp.join(REPO, col['README'])), where
            collections[col['Name']] = metafile
        assert data.get('Models'), f'{metafile} has no Models'
    for metafile, model in all_models():
        where = f'{metafile}: {model["Name"]}'
        assert model.get('In Collection') in collections, where
        meta = model.get('Metadata', {})
        for key in ('Training Data', 'Architecture'):
            assert meta.get(key), f'{where}: Metadata has no {key}'
        assert 'Weights' not in model, \
            f'{where}: no trained weights are shipped; remove Weights'
        is_distill = osp.basename(model['Config']).startswith(DISTILL_PREFIXES)
        has_teacher = ('Teacher' in meta) != ('Teachers' in meta)
        assert is_distill == (has_teacher and 'Student' in meta), (
            f'{where}: a distillation config (only) has Student and either '
            'Teacher or Teachers')
        results = model.get('Results')
        if results is None:
            assert model.get('Comment'), \
                f'{where}: without Results, say why in a Comment'
            continue
        for res in results:
            for key in ('Task', 'Dataset', 'Metrics'):
                assert res.get(key), f'{where}: a result has no {key}'
            for name, value in res['Metrics'].items():
                # absolute metrics only: a gain compares with nothing
                assert isinstance(value, Number), (where, name)
                assert 'gain' not in name.lower(), (where, name)
            # every number here is someone else's: say whose
            assert 'Published' in res.get('Comment', ''), \
                f'{where}: mark the source of the result in a Comment'


@pytest.mark.parametrize(
    'metafile,model',
    distill_models(),
    ids=[m['Name'] for _, m in distill_models()])
def test_teacher_and_student_match_the_config(metafile, model):
    where = f'{metafile}: {model["Name"]}'
    meta = model['Metadata']
    facts = config_facts(model['Config'])
    student = meta['Student']
    if 'Teachers' in meta:
        assert set(meta['Teachers']) == set(facts.get('teachers', {})), where
        for name, teacher in meta['Teachers'].items():
            assert teacher['Config'] == facts['teachers'][name]['config'], \
                (where, name)
            assert teacher['Weights'] == facts['teachers'][name]['ckpt'], \
                (where, name)
    else:
        teacher = meta['Teacher']
        assert teacher['Config'] == facts['teacher'], where
        assert teacher['Weights'] == facts['teacher_ckpt'], where
    # the student is the baseline config the distillation config inherits
    assert student['Config'] == facts['base'], where
    # {algorithm}_{location}_...: the name's location is Metadata.Location
    assert meta['Location'] == model['Name'].split('_')[1], where


@pytest.mark.parametrize(
    'metafile,model',
    distill_models(),
    ids=[m['Name'] for _, m in distill_models()])
def test_host_metrics_and_weights_are_the_host_zoo_ones(metafile, model):
    meta = model['Metadata']
    roles = [(r, meta[r]) for r in ('Teacher', 'Student') if r in meta]
    roles += [(f'Teachers.{n}', t)
              for n, t in (meta.get('Teachers') or {}).items()]
    for role, entry in roles:
        if '::' not in entry['Config'] or 'Metrics' not in entry:
            continue
        where = f'{metafile}: {model["Name"]}: {role}'
        zoo = host_zoo_entry(entry['Config'])
        assert zoo, f'{where}: {entry["Config"]} is not in the host zoo'
        assert entry.get('Weights') == zoo.get('Weights'), where
        results = zoo.get('Results') or []
        if isinstance(results, dict):  # mmseg writes a single result so
            results = [results]
        published = {}
        for res in results:
            published.update(res.get('Metrics', {}))
        for name, value in entry['Metrics'].items():
            assert name in published, f'{where}: host has no {name}'
            assert value == pytest.approx(float(published[name])), \
                f'{where}: {name} {value} != host zoo {published[name]}'


@pytest.mark.parametrize(
    'metafile,model',
    distill_models(),
    ids=[m['Name'] for _, m in distill_models()])
def test_published_numbers_are_in_the_method_readme(metafile, model):
    """Results and non-host student metrics appear in the README table."""
    where = f'{metafile}: {model["Name"]}'
    numbers = readme_numbers(metafile)
    student = model['Metadata']['Student']
    values = [] if '::' in student['Config'] else list(
        student.get('Metrics', {}).values())
    for res in model.get('Results', []):
        values += list(res['Metrics'].values())
        # the student's own number, for the comparison the result is for
        assert set(res['Metrics']) <= set(student.get('Metrics', {})), \
            f'{where}: Results without the Student\'s metric'
    for value in values:
        assert float(value) in numbers, \
            f'{where}: {value} is not in {osp.dirname(metafile)}/README.md'
    with open(osp.join(REPO, osp.dirname(metafile), 'README.md')) as f:
        assert osp.basename(model['Config']) in f.read(), \
            f'{where}: the README does not list the config'


def test_mmengine_reads_the_index_through_dot_mim():
    pytest.importorskip('mmkd_channel')
    from mmengine.config.utils import _get_cfg_metainfo

    from mmkd_channel.utils.mim import PACKAGE_DIR
    link = osp.join(PACKAGE_DIR, '.mim', 'model-index.yml')
    assert osp.isfile(
        link), f'{link} is missing (a link to ../../model-index.yml)'
    assert osp.samefile(link, osp.join(REPO, 'model-index.yml'))
    for _, model in all_models():
        rel = model['Config'].partition('/')[-1]  # 'cwt/x.py'
        meta = _get_cfg_metainfo(PACKAGE_DIR, rel)
        assert meta['Name'] == model['Name']
        assert osp.isfile(osp.join(PACKAGE_DIR, '.mim', meta['Config']))


def test_modelindex_parses_the_index():
    modelindex = pytest.importorskip('modelindex')
    index = modelindex.load(osp.join(REPO, 'model-index.yml'))
    assert len(index.models) == len(all_models())
    # modelindex resolves README relative to the metafile, OpenMMLab
    # metafiles (mmdet's too) relative to the repository: skip those.
    errors = [e for e in index.check(silent=True) if 'README' not in e]
    assert not errors, errors


def test_shipped_configs_inherit_by_file_path():
    """Host entry points parse a config before importing this package, so
    ``mmkd_channel::`` in a shipped config would not resolve there."""
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    assert paths
    for path in paths:
        with open(path) as f:
            assert 'mmkd_channel::' not in f.read(), (
                f'{osp.relpath(path, REPO)}: inherit this repository\'s '
                "configs by relative path ('../_base_/...'), not "
                "'mmkd_channel::'")
