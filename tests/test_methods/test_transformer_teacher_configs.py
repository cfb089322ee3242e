"""The shipped transformer-teacher configs distill tokens into a CNN stage.

DeiT-S -> ResNet-18 and ViT-B -> MobileNetV2 (CWT on the last stage):
their tokens become a map on the patch grid, the student stage is
upsampled to it, and the teacher stops after its last block. Training them
2 iterations on tiny data is tests/test_configs/test_all_configs.py; here
they also train 2 iterations at 112 px, a grid that is not the 64 px one.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmkd_channel.testing.tiny_configs import tiny_cls_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    # config: (student path, student ch, teacher ch, extra tokens)
    'configs/cwt/cwt_last-stage_deit-s_resnet18_8xb32-100e_in1k.py':
    ('backbone.layer4', 512, 384, 1),
    'configs/cwt/cwt_last-stage_vit-b_mobilenet-v2_8xb32-300e_in1k.py':
    ('backbone.conv2', 1280, 768, 1),
}


def code_lines(path):
    with open(osp.join(REPO, path)) as f:
        return [
            ln for ln in f if ln.strip() and not ln.strip().startswith('#')
        ]


@pytest.fixture(scope='module')
def imagenet_112(tmp_path_factory):
    from mmkd_channel.testing import make_imagenet
    return make_imagenet(
        tmp_path_factory.mktemp('imagenet112'),
        num_classes=4,
        per_class_train=1,
        per_class_val=1,
        img_size=(128, 128))


@pytest.mark.parametrize('path', sorted(CONFIGS))
def test_tokens_to_cnn_stage_trains(path, imagenet_112, tmp_path):
    student_path, s_ch, t_ch, extra = CONFIGS[path]
    assert len(code_lines(path)) <= 12
    cfg = Config.fromfile(osp.join(REPO, path))
    tiny_cls_config(cfg, imagenet_112, str(tmp_path), img_size=112)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    pair = model.distill_pairs['last_stage']
    assert pair.student_path == student_path
    assert pair.teacher_path == 'backbone.layers.11'
    conn = pair.teacher_connector
    assert conn.model_extra_tokens == extra
    assert conn.patch_embed_path == 'backbone.patch_embed'

    # 112 px: teacher 7 x 7 patches (stride 16), student 4 x 4 (stride 32)
    x = torch.rand(2, 3, 112, 112)
    after = []
    hook = model.teacher.backbone.ln1.register_forward_hook(
        lambda *a: after.append(1))
    t = model.teacher_features(x)['backbone.layers.11']
    hook.remove()
    assert not after  # the teacher stopped after its last block
    assert t.shape == (2, extra + 7 * 7, t_ch)
    t_map = conn(t)
    assert t_map.shape == (2, t_ch, 7, 7)
    torch.testing.assert_close(t_map.flatten(2).transpose(1, 2), t[:, extra:])
    with model.student_recorder.record() as s:
        model.student(x)
    assert s[student_path].shape == (2, s_ch, 4, 4)
    assert pair.connector(s[student_path], size=(7, 7)).shape == t_map.shape

    runner.train()
    assert runner.iter == 2
    values = runner.message_hub.get_scalar(
        'train/loss_distill_last_stage').data[0]
    assert len(values) == 2 and all(map(math.isfinite, values))
