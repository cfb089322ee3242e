"""A timm model as teacher of an mmpretrain student, through mmpretrain's
``TimmClassifier``, its weights read by this project's safe loader.

``pretrained=False``: nothing downloads; the "checkpoint" is a timm model's
own ``state_dict`` saved in the test. Hugging Face teachers:
test_hugging_face_teachers.py.
"""
import pytest
import timm
import torch
from cls_teacher_utils import (NUM_CLASSES, batch, layer4_pair, resnet18,
                               train_two_steps)

from mmkd_channel.models import FeatureDistiller

# (timm name, extra create_model kwargs, teacher feature path, channels,
#  teacher connector): a ConvNeXt stage (1/32 map) and a ViT block (tokens
#  on a 1/16 grid)
TEACHERS = {
    'convnext': ('convnext_atto', {}, 'model.stages.3', 320, None),
    'vit': ('vit_tiny_patch16_224', dict(img_size=64), 'model.blocks.11', 192,
            dict(type='TokensToMap')),
}


@pytest.fixture(scope='module', params=sorted(TEACHERS))
def setup(request, tmp_path_factory):
    name, kwargs, path, channels, t_conn = TEACHERS[request.param]
    torch.manual_seed(0)
    src = timm.create_model(
        name, pretrained=False, num_classes=NUM_CLASSES, **kwargs).eval()
    ckpt = tmp_path_factory.mktemp(request.param) / f'{name}.pth'
    torch.save(src.state_dict(), ckpt)  # timm's own keys, no prefix
    torch.manual_seed(1)  # the teacher is built with other random weights
    model = FeatureDistiller(
        student=resnet18(),
        teacher=dict(
            type='mmpretrain.TimmClassifier',
            model_name=name,
            pretrained=False,
            num_classes=NUM_CLASSES,
            **kwargs),
        teacher_ckpt=str(ckpt),
        distill=dict(
            feat=layer4_pair(path, channels, t_conn),
            logits=dict(
                student='head.fc',
                teacher='model',
                loss=dict(type='KDLoss', tau=4.0))),
        check_input_shape=(1, 3, 64, 64))
    return src, model, path, channels


def test_timm_weights_loaded_by_the_safe_loader(setup):
    src, model, _, _ = setup
    own = model.teacher.model.state_dict()
    for key, value in src.state_dict().items():
        assert torch.equal(own[key], value), key
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.teacher(x), src(x))


def test_feature_and_logits_reach_the_losses(setup):
    src, model, path, channels = setup
    x = model.data_preprocessor(batch(), True)['inputs']
    t_out = model.teacher_features(x)
    with torch.no_grad():
        torch.testing.assert_close(t_out['model'], src(x))  # logits
    pair = model.distill_pairs['feat']
    t_map = t_out[path]
    if pair.teacher_connector is not None:  # ViT: 1 + 4 x 4 tokens
        assert t_map.shape == (2, 1 + 16, channels)
        t_map = pair.teacher_connector(t_map)
        tokens = t_out[path][:, 1:]
        torch.testing.assert_close(t_map[:, :, 1, 2], tokens[:, 1 * 4 + 2])
    assert t_map.shape == (2, channels, 4, 4) or t_map.shape == (2, channels,
                                                                 2, 2)
    with model.student_recorder.record() as s_out:
        model.student(x)
    s = s_out['backbone.layer4']
    expect = ((pair.connector(s, size=t_map.shape[-2:]) - t_map)**2).mean()
    torch.testing.assert_close(pair(s, t_out[path]), expect)


def test_trains_two_iterations(setup):
    src, model, _, _ = setup
    for log in train_two_steps(model,
                               ('loss_distill_feat', 'loss_distill_logits')):
        assert log['loss_distill_logits'] > 0
