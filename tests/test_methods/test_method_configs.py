"""The shipped OFD and SAKD configs distill what their papers distill.

(Training every config on tiny data is tests/test_configs.)
"""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmkd_channel.models import FeatureDistiller, ofd_margin_from_bn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def build(path):
    cfg = Config.fromfile(osp.join(REPO, path))
    model = cfg.model.to_dict()
    model.pop('type')
    model['teacher_ckpt'] = None
    # as the Runner does: the top-level preprocessor (no type) goes to the
    # model dict, and the distiller hands it to the student
    model['data_preprocessor'] = cfg.data_preprocessor.to_dict()
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return FeatureDistiller(**model)


def samples(*labels):
    return [DataSample().set_gt_label(y) for y in labels]


def test_ofd_r50_mbv1_takes_pre_relu_stage_ends_and_teacher_margins():
    model = build('configs/ofd/ofd_r50-mbv1_4-stages_100e_in1k.py')
    teacher = model.teacher
    blocks = ['layer1.2', 'layer2.3', 'layer3.5', 'layer4.2']
    weights = [1 / 8e4, 1 / 4e4, 1 / 2e4, 1e-4]
    for i, (block, w) in enumerate(zip(blocks, weights)):
        pair = model.distill_pairs[f'stage{i + 1}']
        assert pair.teacher_connector.bn_path == f'backbone.{block}.bn3'
        bn = teacher.get_submodule(f'backbone.{block}.bn3')
        torch.testing.assert_close(pair.teacher_connector.margin,
                                   ofd_margin_from_bn(bn))
        assert abs(pair.loss.loss_weight - w) < 1e-12
    x = torch.rand(2, 3, 64, 64)
    t = model.teacher_features(x)
    s_rec = model.student_recorder
    with s_rec.record() as s:
        model.student(x)
    # the teacher features are the stage outputs before the final ReLU
    outs = {}
    hooks = [
        teacher.get_submodule(f'backbone.{b}').register_forward_hook(
            lambda m, a, o, b=b: outs.__setitem__(b, o.clone()))
        for b in blocks
    ]
    with torch.no_grad():
        teacher(x, mode='tensor')
    for h in hooks:
        h.remove()
    for i, block in enumerate(blocks):
        feat = t[f'backbone.{block}.relu:input#-1']
        assert (feat < 0).any()
        torch.testing.assert_close(torch.relu(feat), outs[block])
        pair = model.distill_pairs[f'stage{i + 1}']
        s_feat = s[pair.student_path]
        assert s_feat.shape[1] * 2 == feat.shape[1]  # 128->256 ... 1024->2048
        assert s_feat.shape[2:] == feat.shape[2:]
        assert (s_feat < 0).any()  # the student side is pre-ReLU too


def test_sakd_cifar_labels_reach_the_classification_branch():
    model = build('configs/sakd/sakd_r50-r18_last-stage_200e_cifar100.py')
    pair = model.distill_pairs['last_stage']
    assert sum(p.numel() for p in pair.connector.parameters()) == 0
    assert pair.loss.fc.in_features == 16
    x = torch.rand(2, 3, 32, 32)
    losses = model.loss(x, samples(3, 97))
    with model.student_recorder.record() as s:
        model.student(x)
    t = model.teacher_features(x)
    path = pair.student_path
    torch.testing.assert_close(losses['loss_distill_last_stage'],
                               pair(s[path], t[path], samples(3, 97)))
    assert losses['loss_distill_last_stage'] > pair(s[path], t[path])
