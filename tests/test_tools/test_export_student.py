"""Exported students load in mmdet, mmseg and mmpretrain with their own
APIs, with zero missing / unexpected keys, and predict exactly like the
distiller they came from."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmkd_toy import REPO, subprocess_env

from mmkd_channel.testing import make_cityscapes, make_imagenet
from mmkd_channel.testing.tiny_configs import tiny_cls_config, tiny_seg_config
from mmkd_channel.utils import safe_torch_load

TOOL = osp.join(REPO, 'tools', 'model_converters', 'export_student.py')
SEG = ('configs/cwt/cwt_last-stage_pspnet_r101-d8_pspnet_r18-d8_'
       '4xb2-80k_cityscapes-512x1024.py')
CLS = 'configs/cwt/cwt_last-stage_resnet50_mobilenet-v1_8xb32-100e_in1k.py'


def load_tool():
    spec = importlib.util.spec_from_file_location('export_student', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def saved_runner(cfg: Config, work_dir: str) -> Runner:
    """A Runner of ``cfg`` whose model was saved to ``epoch_0.pth``.

    Untrained: the host model built by the host API starts from another
    random initialisation, so equal predictions prove the loading.
    """
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    runner = Runner.from_cfg(cfg)
    runner.save_checkpoint(
        work_dir,
        'epoch_0.pth',
        save_optimizer=False,
        save_param_scheduler=False)
    runner.model.eval()  # as the host's init_* functions leave theirs
    return runner


def assert_keys_match(model: torch.nn.Module, exported: dict) -> None:
    own = set(model.state_dict())
    assert own == set(exported), (
        f'missing {sorted(own - set(exported))[:5]}, unexpected '
        f'{sorted(set(exported) - own)[:5]}')
    # strict loading agrees: zero missing / unexpected keys
    result = model.load_state_dict(exported, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# Runs in a fresh interpreter in which mmkd_channel cannot be imported (a
# meta-path finder refuses it before the editable install's finder or the
# repository on sys.path could provide it), as where it is not installed.
WITHOUT_MMKD = """
import sys

class NoMMKD:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'mmkd_channel':
            raise ModuleNotFoundError(f'No module named {name!r} (blocked)')

sys.meta_path.insert(0, NoMMKD())
"""


def run_without_mmkd(code: str, cwd: str) -> subprocess.CompletedProcess:
    """Run ``code`` where mmkd_channel is not importable."""
    proc = subprocess.run([sys.executable, '-c', WITHOUT_MMKD + code],
                          cwd=cwd,
                          env=subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_host_pure(config_path: str) -> None:
    """The exported config names nothing of this project."""
    with open(config_path) as f:
        text = f.read()
    assert 'mmkd_channel' not in text, [
        ln for ln in text.splitlines() if 'mmkd_channel' in ln
    ]
    assert 'EpochSeedHook' not in text and 'TeacherEvalHook' not in text


def image(path: str) -> np.ndarray:
    import mmcv
    return mmcv.imread(path)


def test_export_det_through_cli_and_mmdet_apis(coco_data, mmdet_trained,
                                               tmp_path):
    """The student trained by mmdet's own train.py (see conftest)."""
    from mmdet.apis import inference_detector, init_detector
    assert mmdet_trained['proc'].returncode == 0, \
        mmdet_trained['proc'].stderr[-3000:]
    ckpt = mmdet_trained['checkpoint']
    out = str(tmp_path / 'student.pth')
    proc = subprocess.run([sys.executable, TOOL, ckpt, out],
                          cwd=REPO,
                          env=subprocess_env(),
                          capture_output=True,
                          text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    exported = safe_torch_load(out)
    sd = exported['state_dict']
    assert not any(
        k.startswith(('student.', 'teacher.', 'distill_pairs.')) for k in sd)
    assert exported['meta']['dataset_meta']['classes'] == tuple(
        coco_data['classes'])
    assert exported['meta']['iter'] == 1  # from the training run
    trained = safe_torch_load(ckpt)['state_dict']
    for k, v in sd.items():  # exactly the student's trained weights
        assert torch.equal(v, trained[f'student.{k}']), k

    assert_host_pure(str(tmp_path / 'student.py'))
    img_dir = osp.join(coco_data['data_root'], coco_data['val_img'])
    img_path = osp.join(img_dir, sorted(os.listdir(img_dir))[0])
    proc = run_without_mmkd(
        'from mmdet.apis import inference_detector, init_detector\n'
        f"model = init_detector('student.py', {out!r}, device='cpu')\n"
        f'result = inference_detector(model, {img_path!r})\n'
        "assert not any(m.startswith('mmkd_channel') for m in sys.modules)\n"
        "print(type(model).__name__, len(result.pred_instances))\n",
        cwd=str(tmp_path))
    assert proc.stdout.split('\n')[-2].split()[0] == 'FasterRCNN', proc.stdout

    torch.manual_seed(123)  # a different random init: loading must matter
    model = init_detector(str(tmp_path / 'student.py'), out, device='cpu')
    assert type(model).__name__ == 'FasterRCNN'
    assert model.dataset_meta['classes'] == tuple(coco_data['classes'])
    assert_keys_match(model, sd)

    # the distiller as the Runner builds it, with the training checkpoint
    cfg = Config.fromfile(mmdet_trained['cfg'])
    cfg.work_dir = str(tmp_path / 'distiller')
    runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(ckpt)
    distiller = runner.model.eval()
    distiller.cfg = cfg  # the distiller through the same API

    img = image(img_path)
    ours = inference_detector(model, img).pred_instances
    theirs = inference_detector(distiller, img).pred_instances
    assert len(ours) == len(theirs) > 0
    for key in ('bboxes', 'scores', 'labels'):
        assert torch.equal(ours[key], theirs[key]), key


@pytest.fixture(scope='module')
def export(tmp_path_factory):
    return load_tool().export_student


def test_export_seg_through_mmseg_apis(repo_root, tmp_path, export):
    from mmseg.apis import inference_model, init_model
    data = make_cityscapes(
        tmp_path / 'city', num_train=2, num_val=1, img_size=(64, 128))
    cfg = Config.fromfile(osp.join(repo_root, SEG))
    tiny_seg_config(
        cfg,
        data,
        str(tmp_path / 'work'),
        img_scale=(128, 64),
        crop_size=(64, 64),
        batch_size=2)
    # inference_model reads the top-level test_pipeline: shrink it too
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    runner = saved_runner(cfg, str(tmp_path / 'work'))
    out = str(tmp_path / 'student.pth')
    result = export(str(tmp_path / 'work' / 'epoch_0.pth'), out)
    assert any(k.startswith('distill_pairs.') for k in result['dropped'])
    sd = result['state_dict']

    assert_host_pure(result['config_path'])
    img_dir = osp.join(data['data_root'], data['val_img_dir'], 'frankfurt')
    img_path = osp.join(img_dir, sorted(os.listdir(img_dir))[0])
    proc = run_without_mmkd(
        'from mmseg.apis import inference_model, init_model\n'
        f"model = init_model({result['config_path']!r}, {out!r}, "
        "device='cpu')\n"
        f'result = inference_model(model, {img_path!r})\n'
        "assert not any(m.startswith('mmkd_channel') for m in sys.modules)\n"
        'print(type(model).__name__, tuple(result.pred_sem_seg.shape))\n',
        cwd=str(tmp_path))
    assert proc.stdout.split('\n')[-2].split()[0] == 'EncoderDecoder', \
        proc.stdout

    torch.manual_seed(123)
    model = init_model(result['config_path'], out, device='cpu')
    assert type(model).__name__ == 'EncoderDecoder'
    assert_keys_match(model, sd)
    assert model.dataset_meta['classes'][0] == 'road'

    img = image(img_path)
    ours = inference_model(model, img)
    distiller = runner.model
    distiller.cfg = runner.cfg
    theirs = inference_model(distiller, img)
    assert torch.equal(ours.seg_logits.data, theirs.seg_logits.data)
    assert torch.equal(ours.pred_sem_seg.data, theirs.pred_sem_seg.data)

    # the distillation config instead of the export: a message saying what
    # to do, not an unexpected-keyword error
    with pytest.raises(TypeError, match='export_student.py CKPT student.pth'):
        init_model(runner.cfg, device='cpu')


def test_export_cls_through_mmpretrain_apis(repo_root, tmp_path, export):
    from mmpretrain import ImageClassificationInferencer, get_model
    data = make_imagenet(
        tmp_path / 'in',
        num_classes=4,
        per_class_train=1,
        per_class_val=1,
        img_size=(32, 32))
    cfg = Config.fromfile(osp.join(repo_root, CLS))
    tiny_cls_config(
        cfg, data, str(tmp_path / 'work'), img_size=32, batch_size=4)
    # as tools/train.py adds it; a host hook that must stay beside it
    cfg.custom_hooks = [
        dict(type='mmkd_channel.EpochSeedHook'),
        dict(type='EmptyCacheHook')
    ]
    runner = saved_runner(cfg, str(tmp_path / 'work'))
    out = str(tmp_path / 'student.pth')
    result = export(str(tmp_path / 'work' / 'epoch_0.pth'), out)
    sd = result['state_dict']

    # MobileNetV1 is this project's: exactly the one import it needs
    student_cfg = Config.fromfile(result['config_path'])
    assert student_cfg.custom_imports.imports == ['mmkd_channel']
    assert [h['type'] for h in student_cfg.custom_hooks] == ['EmptyCacheHook']
    assert 'EpochSeedHook' not in student_cfg.pretty_text

    torch.manual_seed(123)
    model = get_model(result['config_path'], pretrained=out, device='cpu')
    assert type(model).__name__ == 'ImageClassifier'
    assert type(model.backbone).__name__ == 'MobileNetV1'
    assert list(model._dataset_meta['classes']) == list(data['classes'])
    assert_keys_match(model, sd)

    img = osp.join(data['data_root'], 'val',
                   sorted(os.listdir(osp.join(data['data_root'], 'val')))[0])
    img = osp.join(img, sorted(os.listdir(img))[0])
    ours = ImageClassificationInferencer(
        result['config_path'], pretrained=out, device='cpu')(img)[0]
    distiller = runner.model
    distiller._config = runner.cfg
    distiller._dataset_meta = model._dataset_meta
    theirs = ImageClassificationInferencer(distiller, device='cpu')(img)[0]
    np.testing.assert_array_equal(ours['pred_scores'], theirs['pred_scores'])
    assert ours['pred_class'] == theirs['pred_class']
    assert ours['pred_class'] in data['classes']
