"""A Hugging Face model as teacher of an mmpretrain student, through
mmpretrain's ``HuggingFaceClassifier``, its weights read by this project's
safe loader.

Nothing downloads: the teacher is built from a ``config.json`` written into
a local directory (``pretrained=False`` reads only that) and its checkpoint
is the Hugging Face model's own ``state_dict``, saved here.
"""
import logging
import math
import os
import os.path as osp
from typing import Optional

import pytest
import torch
import transformers
from cls_teacher_utils import (NUM_CLASSES, batch, layer4_pair, resnet18,
                               train_two_steps)
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmkd_channel.models import FeatureDistiller
from mmkd_channel.models.distillers.pair_check import DistillCheckError
from mmkd_channel.testing import make_imagenet
from mmkd_channel.testing.tiny_configs import tiny_cls_config
from mmkd_channel.utils.checkpoint import restricted_torch_load

WIDTH = 48  # the ViT's token width
BLOCK = 'model.vit.encoder.layer.1'  # last block: (tokens, ) on a 4 x 4 grid
LOGITS = 'model.classifier'
IMAGENET = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
# what Hugging Face's ViT image processors do: rescale to [0, 1], then
# mean / std 0.5, i.e. mean / std 127.5 on 0-255 RGB pixels
HF_VIT_NORM = dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)


class Payload:
    """Unpickling it creates ``marker``: only a loader that runs pickled
    code would."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture(scope='module')
def hf(tmp_path_factory):
    """A 2-block ViT written as a local Hugging Face model directory, and
    its checkpoint (with a pickled payload beside the weights)."""
    root = tmp_path_factory.mktemp('hf')
    config = transformers.ViTConfig(
        image_size=64,
        patch_size=16,
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * WIDTH,
        num_labels=NUM_CLASSES)
    config.save_pretrained(root / 'vit')
    assert sorted(os.listdir(root / 'vit')) == ['config.json']
    torch.manual_seed(0)
    src = transformers.ViTForImageClassification(config).eval()
    marker = str(root / 'payload_ran')
    ckpt = str(root / 'hf_vit.pth')
    torch.save(
        dict(state_dict=src.state_dict(), meta=dict(note=Payload(marker))),
        ckpt)
    return dict(dir=str(root / 'vit'), src=src, ckpt=ckpt, marker=marker)


def teacher_cfg(hf: dict) -> dict:
    return dict(
        type='mmpretrain.HuggingFaceClassifier',
        model_name=hf['dir'],
        pretrained=False,
        data_preprocessor=HF_VIT_NORM)


def token_pair(teacher: str = BLOCK) -> dict:
    return layer4_pair(teacher, WIDTH, dict(type='TokensToMap'))


def distiller(hf: dict,
              teacher: Optional[dict] = None,
              **distill) -> FeatureDistiller:
    torch.manual_seed(1)  # the teacher starts from other random weights
    return FeatureDistiller(
        student=resnet18(dict(num_classes=NUM_CLASSES, **IMAGENET)),
        teacher=teacher or teacher_cfg(hf),
        teacher_ckpt=hf['ckpt'],
        distill=distill,
        check_input_shape=(1, 3, 64, 64))


@pytest.fixture(scope='module')
def model(hf):
    return distiller(
        hf,
        tokens=token_pair(),
        logits=dict(
            student='head.fc',
            teacher=LOGITS,
            loss=dict(type='KDLoss', tau=4.0)))


def as_hf_pixels(bgr: torch.Tensor) -> torch.Tensor:
    """What a Hugging Face ViT image processor makes of BGR 0-255 images."""
    return (bgr.flip(1) / 255 - 0.5) / 0.5


def test_weights_loaded_by_the_safe_loader(hf, model):
    src = hf['src']
    own = model.teacher.state_dict()
    assert own.keys() == src.state_dict().keys()
    for key, value in src.state_dict().items():
        assert torch.equal(own[key], value), key
    # without the checkpoint the same config gives other weights
    torch.manual_seed(1)
    from mmpretrain.registry import MODELS
    fresh = MODELS.build(teacher_cfg(hf)).state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in own.items())
    # the pickled payload beside the weights did not run
    assert not osp.exists(hf['marker'])


def test_tokens_and_logits_reach_the_losses(hf, model):
    data = batch()
    x = model.data_preprocessor(data, True)['inputs']  # ImageNet-normalised
    t_out = model.teacher_features(x)
    with torch.no_grad():  # fed its own normalisation of the same images
        expect = hf['src'](pixel_values=as_hf_pixels(data['inputs'])).logits
    torch.testing.assert_close(t_out[LOGITS], expect)

    block = t_out[BLOCK]  # a Hugging Face layer returns a 1-tuple
    assert isinstance(block, tuple) and len(block) == 1
    tokens = block[0]
    assert tokens.shape == (2, 1 + 4 * 4, WIDTH)
    pair = model.distill_pairs['tokens']
    conn = pair.teacher_connector
    assert conn.patch_embed_path == 'model.vit.embeddings.patch_embeddings'
    t_map = conn(tokens)
    assert t_map.shape == (2, WIDTH, 4, 4)
    torch.testing.assert_close(t_map[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])

    with model.student_recorder.record() as s_out:
        model.student(x)
    s = s_out['backbone.layer4']
    assert s.shape == (2, 512, 2, 2)
    expect_l2 = ((pair.connector(s, size=(4, 4)) - t_map)**2).mean()
    torch.testing.assert_close(pair(s, block), expect_l2)


def test_trains_two_iterations(model):
    logs = train_two_steps(model,
                           ('loss_distill_tokens', 'loss_distill_logits'))
    for log in logs:
        assert log['loss_distill_tokens'] > 0
        assert log['loss_distill_logits'] > 0


def test_teacher_stops_after_its_last_recorded_block(hf):
    model = distiller(hf, tokens=token_pair('model.vit.encoder.layer.0'))
    calls = []
    hooks = [
        model.teacher.get_submodule(p).register_forward_hook(
            lambda *a, p=p: calls.append(p))
        for p in ('model.vit.encoder.layer.0', 'model.vit.encoder.layer.1',
                  LOGITS)
    ]
    t_out = model.teacher_features(torch.rand(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert calls == ['model.vit.encoder.layer.0']
    assert t_out['model.vit.encoder.layer.0'][0].shape == (1, 17, WIDTH)


def test_whole_model_output_is_refused_naming_the_classifier(hf):
    """``teacher='model'`` is a timm model's logits, but a Hugging Face
    model returns a dict of outputs."""
    with pytest.raises(DistillCheckError) as info:
        distiller(
            hf,
            logits=dict(
                student='head.fc',
                teacher='model',
                loss=dict(type='KDLoss', tau=4.0)))
    msg = str(info.value)
    assert "distill['logits']" in msg
    assert 'ImageClassifierOutput' in msg
    assert "'model.classifier'" in msg


@pytest.mark.parametrize('norm', [None, HF_VIT_NORM])
def test_warns_when_the_teacher_would_see_raw_pixels(hf, norm):
    """mmpretrain's wrapper does not normalise unless told: the teacher
    would get 0-255 BGR pixels, which no Hugging Face model was trained
    on."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model = distiller(
            hf,
            teacher=dict(teacher_cfg(hf), data_preprocessor=norm),
            tokens=token_pair())
    finally:
        logger.removeHandler(handler)
    warned = [
        r.getMessage() for r in records
        if r.levelno == logging.WARNING and '0-255' in r.getMessage()
    ]
    if norm is None:
        assert len(warned) == 1
        assert 'HuggingFaceClassifier' in warned[0]
        assert 'mean=[127.5] * 3' in warned[0]
        x = torch.rand(1, 3, 8, 8)  # and what it warns about is true:
        rgb = x * torch.tensor(IMAGENET['std']).view(1, 3, 1, 1) + \
            torch.tensor(IMAGENET['mean']).view(1, 3, 1, 1)
        torch.testing.assert_close(model._teacher_inputs(x), rgb.flip(1))
    else:
        assert warned == []


CONFIG = """
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
model = dict(
    _delete_=True, type='mmkd_channel.FeatureDistiller', student=_base_.model,
    teacher=dict(type='mmpretrain.HuggingFaceClassifier', model_name={dir!r},
                 pretrained=False,
                 data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3,
                                        to_rgb=True)),
    teacher_ckpt={ckpt!r},
    distill=dict(
        tokens=dict(student='backbone.layer4',
                    teacher='model.vit.encoder.layer.1',
                    connector=dict(type='ChannelWiseTransform',
                                   in_channels=512, out_channels=48,
                                   align='bilinear'),
                    teacher_connector=dict(type='TokensToMap'),
                    loss=dict(type='FeatureL2Loss', loss_weight=2.0)),
        logits=dict(student='head.fc', teacher='model.classifier',
                    loss=dict(type='KDLoss', tau=4.0))))
"""


def test_config_trains_two_iterations_with_the_runner(hf, tmp_path):
    """The config of docs/distill_from_transformers.md, on tiny ImageNet."""
    path = tmp_path / 'hf_teacher.py'
    path.write_text(CONFIG.format(dir=hf['dir'], ckpt=hf['ckpt']))
    data = make_imagenet(
        tmp_path / 'data',
        num_classes=NUM_CLASSES,
        per_class_train=1,
        per_class_val=1,
        img_size=(64, 64))
    cfg = Config.fromfile(str(path))
    tiny_cls_config(cfg, data, str(tmp_path / 'work'), img_size=64)
    cfg.model.teacher_ckpt = hf['ckpt']  # tiny_cls_config drops it
    runner = Runner.from_cfg(cfg)
    teacher = runner.model.teacher
    for key, value in hf['src'].state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key
    # the student's ImageNet batch reaches the teacher as HF ViT pixels
    bgr = torch.rand(1, 3, 64, 64) * 255
    x_s = runner.model.data_preprocessor(
        dict(inputs=bgr, data_samples=None), False)['inputs']
    torch.testing.assert_close(
        runner.model._teacher_inputs(x_s), as_hf_pixels(bgr))

    runner.train()
    assert runner.iter == 2
    for key in ('tokens', 'logits'):
        values = runner.message_hub.get_scalar(
            f'train/loss_distill_{key}').data[0]
        assert len(values) == 2 and all(map(math.isfinite, values)), key
    ckpt = restricted_torch_load(str(tmp_path / 'work' / 'epoch_1.pth'))
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])
    for key, value in hf['src'].state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key
