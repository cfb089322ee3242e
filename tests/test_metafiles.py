"""model-index.yml and configs/*/metafile.yml agree with configs/.

Every shipped config (all of ``configs/`` except ``_base_``) must be a model of
some metafile, every metafile entry must point to an existing config, and
MMEngine must find the index through ``mmkd_channel/.mim``. A new config folder
therefore fails here until its metafile is written and imported by ``model-
index.yml``.
"""
import glob
import os.path as osp
from numbers import Number

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HOSTS = ('mmdet', 'mmseg', 'mmpretrain')


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


def check_host_config(ref, where):
    """``mmdet::x.py`` exists in the host package; a path in this repo."""
    if '::' in ref:
        package, rel = ref.split('::', 1)
        assert package in HOSTS, f'{where}: unknown package in {ref}'
        mod = pytest.importorskip(package)
        path = osp.join(osp.dirname(mod.__file__), '.mim', 'configs', rel)
    else:
        path = osp.join(REPO, ref)
    assert osp.isfile(path), f'{where}: {ref} does not exist'


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
        if 'Teacher' in meta or 'Student' in meta:  # a distillation config
            for role in ('Teacher', 'Student'):
                assert meta.get(role, {}).get('Name'), \
                    f'{where}: Metadata.{role} needs a Name'
                check_host_config(meta[role]['Config'], f'{where}: {role}')
        else:
            assert not osp.basename(model['Config']).startswith(
                ('cwt_', 'cwd_', 'ofd_', 'sakd_', 'kd_')), \
                f'{where}: a distillation config needs Teacher and Student'
        results = model.get('Results')
        if results is None:
            assert model.get('Comment'), \
                f'{where}: without Results, say why in a Comment'
            continue
        for res in results:
            for key in ('Task', 'Dataset', 'Metrics'):
                assert res.get(key), f'{where}: a result has no {key}'
            assert all(isinstance(v, Number) for v in res['Metrics'].values())
            # every number here is someone else's: say whose
            assert 'Published' in res.get('Comment', ''), \
                f'{where}: mark the source of the result in a Comment'


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
