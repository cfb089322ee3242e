"""Teacher truncation on the tiny Faster R-CNN config: same features, and
the teacher's RPN and RoI head never run."""
import copy
import os.path as osp

import torch
from conftest import REPO
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner
from mmkd_bench.model_index import load_pairs

from mmkd_channel.testing.tiny_configs import tiny_det_config

# the model index's CWT Faster R-CNN config (looked up: names may change)
CONFIG = next(
    p.config for p in load_pairs(REPO)
    if p.collection == 'CWT' and p.task == 'Object Detection')


def count_calls(module: torch.nn.Module) -> tuple:
    """Hook every submodule of ``module``; return (counter, handles)."""
    counter = {'n': 0}

    def hook(*_):
        counter['n'] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    return counter, handles


def test_truncated_teacher_records_same_features_and_skips_heads(
        repo_root, coco_data, tmp_path):
    cfg = tiny_det_config(
        Config.fromfile(osp.join(repo_root, CONFIG)),
        coco_data,
        str(tmp_path),
        img_scale=(64, 64))
    init_default_scope('mmdet')
    distiller = MODELS.build(cfg.model)
    distiller.train()
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    data = distiller.data_preprocessor(next(iter(loader)), True)
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad(), distiller.student_recorder.record() as s_out:
        distiller.student(inputs, copy.deepcopy(samples), mode='loss')
    calls = s_out['__calls__']
    assert calls == {'neck': 1}

    teacher = distiller.teacher
    rpn, rpn_handles = count_calls(teacher.rpn_head)
    roi, roi_handles = count_calls(teacher.roi_head)
    neck, neck_handles = count_calls(teacher.neck)
    try:
        assert distiller.truncate_teacher
        cut = distiller.teacher_features(inputs, samples, stop_after=calls)
        assert (rpn['n'], roi['n']) == (0, 0)
        assert neck['n'] > 0

        distiller.truncate_teacher = False
        full = distiller.teacher_features(inputs, samples, stop_after=calls)
        assert rpn['n'] > 0 and roi['n'] > 0  # the hooks do count
    finally:
        for h in rpn_handles + roi_handles + neck_handles:
            h.remove()
    assert len(cut['neck']) == len(full['neck']) == 5
    for a, b in zip(cut['neck'], full['neck']):
        assert torch.equal(a, b)
