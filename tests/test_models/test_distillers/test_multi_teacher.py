"""Several teachers distill into one student.

A CNN (ResNet-34) and a transformer (DeiT-tiny) teacher, each with its own
checkpoint, each frozen, out of the optimizer and the checkpoint, each run
only up to its own last recorded module; ``teacher=`` stays the one-teacher
form.
"""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from mmkd_channel.models import FeatureDistiller


def classifier(backbone, channels, neck=True):
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling') if neck else None,
        head=dict(
            type='LinearClsHead' if neck else 'VisionTransformerClsHead',
            num_classes=4,
            in_channels=channels,
            loss=dict(type='CrossEntropyLoss')))


STUDENT = classifier(dict(type='ResNet', depth=18), 512)
CNN = classifier(dict(type='ResNet', depth=34), 512)
VIT = classifier(
    dict(
        type='VisionTransformer', arch='deit-tiny', img_size=64,
        patch_size=16),
    192,
    neck=False)

DISTILL = dict(
    stage2=dict(
        teacher_model='cnn',
        student='backbone.layer2',
        connector=dict(
            type='ChannelWiseTransform', in_channels=128, out_channels=128),
        loss=dict(type='FeatureL2Loss')),
    tokens=dict(
        teacher_model='vit',
        student='backbone.layer4',
        teacher='backbone.layers.5',
        connector=dict(
            type='ChannelWiseTransform',
            in_channels=512,
            out_channels=192,
            align='bilinear'),
        teacher_connector=dict(type='TokensToMap'),
        loss=dict(type='FeatureL2Loss')))


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    """Teacher checkpoints written from independently built models."""
    from mmengine.registry import MODELS, DefaultScope
    root = tmp_path_factory.mktemp('teachers')
    paths, states = {}, {}
    for seed, (name, cfg) in enumerate((('cnn', CNN), ('vit', VIT))):
        torch.manual_seed(100 + seed)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = MODELS.build(copy.deepcopy(cfg))
        model.init_weights()
        states[name] = model.state_dict()
        paths[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': states[name]}, paths[name])
    return paths, states


def make(ckpts, distill=DISTILL, **kwargs):
    paths, _ = ckpts
    args = dict(
        student=STUDENT,
        teachers=dict(
            cnn=dict(config=CNN, ckpt=paths['cnn']),
            vit=dict(config=VIT, ckpt=paths['vit'])),
        distill=distill,
        check_input_shape=(1, 3, 64, 64))
    args.update(kwargs)
    return FeatureDistiller(**args)


def batch():
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=torch.rand(2, 3, 64, 64, generator=g) * 255,
        data_samples=[DataSample().set_gt_label(i) for i in (0, 3)])


@pytest.fixture(scope='module')
def model(ckpts):
    torch.manual_seed(0)
    return make(ckpts)


def test_each_teacher_loaded_and_frozen(model, ckpts):
    _, states = ckpts
    assert set(model.teachers) == {'cnn', 'vit'}
    assert type(model.teachers['vit'].backbone).__name__ == \
        'VisionTransformer'
    for name, teacher in model.teachers.items():
        for key, value in teacher.state_dict().items():
            assert torch.equal(value, states[name][key]), (name, key)
        assert not teacher.training
        assert not any(p.requires_grad for p in teacher.parameters())


def test_each_teacher_stops_after_its_own_last_module(model):
    x = model.data_preprocessor(batch(), True)['inputs']
    ran = []
    hooks = [
        model.teachers['cnn'].backbone.layer3.register_forward_hook(
            lambda *a: ran.append('cnn.layer3')),
        model.teachers['cnn'].backbone.layer2.register_forward_hook(
            lambda *a: ran.append('cnn.layer2')),
        model.teachers['vit'].backbone.layers[6].register_forward_hook(
            lambda *a: ran.append('vit.layers.6')),
        model.teachers['vit'].backbone.layers[5].register_forward_hook(
            lambda *a: ran.append('vit.layers.5')),
    ]
    try:
        losses = model(x, batch()['data_samples'], mode='loss')
    finally:
        for h in hooks:
            h.remove()
    assert sorted(ran) == ['cnn.layer2', 'vit.layers.5']
    assert {'loss_distill_stage2', 'loss_distill_tokens'} <= set(losses)
    # each term compares with its own teacher's feature
    with model.student_recorder.record() as s:
        model.student(x)
    t_cnn = model.teacher_features(x, teacher='cnn')
    t_vit = model.teacher_features(x, teacher='vit')
    assert 'backbone.layers.5' not in t_cnn and 'backbone.layer2' in t_cnn
    for name, t_out in (('stage2', t_cnn), ('tokens', t_vit)):
        pair = model.distill_pairs[name]
        torch.testing.assert_close(
            losses[f'loss_distill_{name}'],
            pair(s[pair.student_path], t_out[pair.teacher_path]))


def test_train_teachers_out_of_optimizer_and_checkpoint(ckpts):
    torch.manual_seed(0)
    model = make(ckpts)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    before = {
        n: copy.deepcopy(t.state_dict())
        for n, t in model.teachers.items()
    }
    model.train()
    for _ in range(2):
        log = model.train_step(batch(), optim)
        assert torch.isfinite(log['loss_distill_stage2'])
        assert torch.isfinite(log['loss_distill_tokens'])
    in_optim = {
        id(p)
        for g in optim.optimizer.param_groups
        for p in g['params']
    }
    for name, teacher in model.teachers.items():
        assert not teacher.training
        assert not in_optim & {id(p) for p in teacher.parameters()}
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, before[name][k]), (name, k)
    state = model.state_dict()
    assert not any(k.startswith(('teacher', 'teachers')) for k in state)
    # resume: a new distiller takes the checkpoint strictly and reloads
    # every teacher from its own file
    resumed = make(ckpts)
    resumed.load_state_dict(state, strict=True)
    for name, teacher in resumed.teachers.items():
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, before[name][k]), (name, k)


def test_one_teacher_forms_still_work(ckpts):
    paths, _ = ckpts
    distill = dict(stage2=dict(DISTILL['stage2']))
    distill['stage2'].pop('teacher_model')
    model = make(
        ckpts,
        distill=distill,
        teachers=None,
        teacher=CNN,
        teacher_ckpt=paths['cnn'])
    assert list(model.teachers) == ['teacher']
    assert model.teacher is model.teachers['teacher']
    assert model.teacher_ckpt == paths['cnn']
    # one entry in `teachers`: teacher_model may be left out
    model = make(
        ckpts,
        distill=distill,
        teachers=dict(cnn=dict(config=CNN, ckpt=paths['cnn'])))
    assert model.distill_pairs['stage2'].teacher_model == 'cnn'
    assert model.teacher is model.teachers['cnn']


def test_bad_teacher_configs_name_the_key(ckpts):
    paths, _ = ckpts
    distill = dict(stage2=dict(DISTILL['stage2']))
    distill['stage2'].pop('teacher_model')
    with pytest.raises(
            KeyError,
            match=r"distill\['stage2'\].*teacher_model"
            r".*'cnn', 'vit'"):
        make(ckpts, distill=dict(distill, tokens=DISTILL['tokens']))
    bad = copy.deepcopy(DISTILL)
    bad['tokens']['teacher_model'] = 'vvit'
    with pytest.raises(KeyError, match=r"teacher_model='vvit'.*'cnn', 'vit'"):
        make(ckpts, distill=bad)
    with pytest.raises(ValueError, match='either `teacher`.*or `teachers`'):
        make(ckpts, teacher=CNN)
    with pytest.raises(KeyError, match=r"teachers\['vit'\].*unknown keys"):
        make(
            ckpts,
            teachers=dict(
                cnn=dict(config=CNN), vit=dict(config=VIT, chkpt='x')))
    with pytest.raises(ValueError, match=r"teachers\['vit'\] is used by no"):
        make(ckpts, distill=dict(stage2=DISTILL['stage2']))


def test_two_teacher_preset_builds_and_trains(repo_root):
    """The preset with the ResNet-50 and DeiT-S it is written for."""
    import os.path as osp

    from mmengine.config import Config
    preset = Config.fromfile(
        osp.join(repo_root, 'configs', '_base_', 'distill',
                 'cwt_cnn_and_vit_teachers_last_stage.py'))
    torch.manual_seed(0)
    model = FeatureDistiller(
        student=STUDENT,
        teachers=dict(
            cnn=dict(config='mmpretrain::resnet/resnet50_8xb32_in1k.py'),
            vit=dict(config='mmpretrain::deit/deit-small_4xb256_in1k.py')),
        distill=preset.distill.to_dict(),
        check_input_shape=(1, 3, 64, 64))
    assert model._checked
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    log = model.train_step(batch(), optim)
    assert torch.isfinite(log['loss_distill_cnn_last_stage'])
    assert torch.isfinite(log['loss_distill_vit_tokens'])


def test_detector_and_classifier_teachers():
    """A detector (RetinaNet R-18, mmdet) and a classifier (DeiT-tiny,
    mmpretrain) teach an mmpretrain student: the detector stops after its
    backbone stage, before neck and heads, with classification samples."""
    distill = dict(
        det_stage=dict(
            teacher_model='det',
            student='backbone.layer4',
            connector=dict(
                type='ChannelWiseTransform', in_channels=512,
                out_channels=512),
            loss=dict(type='FeatureL2Loss')),
        tokens=DISTILL['tokens'])
    torch.manual_seed(0)
    model = FeatureDistiller(
        student=STUDENT,
        teachers=dict(
            det=dict(config='mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'),
            vit=dict(config=VIT)),
        distill=distill,
        check_input_shape=(1, 3, 64, 64))
    assert type(model.teachers['det']).__name__ == 'RetinaNet'
    ran = []
    model.teachers['det'].neck.register_forward_hook(
        lambda *a: ran.append('neck'))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    log = model.train_step(batch(), optim)
    assert not ran
    assert torch.isfinite(log['loss_distill_det_stage'])
    assert torch.isfinite(log['loss_distill_tokens'])


@pytest.fixture(scope='module')
def two_normalisations():
    """A caffe-style (BGR, std 1) teacher next to one that normalises as
    the student."""
    from toy_models import toy_cfg
    student_dp = dict(
        type='ImgDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True)
    caffe_dp = dict(
        type='ImgDataPreprocessor',
        mean=[103.53, 116.28, 123.675],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False)
    return FeatureDistiller(
        student=dict(toy_cfg(8), data_preprocessor=student_dp),
        teachers=dict(
            caffe=dict(config=dict(toy_cfg(8), data_preprocessor=caffe_dp)),
            same=dict(config=dict(toy_cfg(16), data_preprocessor=student_dp))),
        distill=dict(
            a=dict(
                teacher_model='caffe',
                student='neck',
                loss=dict(type='FeatureL2Loss')),
            b=dict(
                teacher_model='same',
                student='neck',
                connector=dict(type='ChannelWiseTransform'),
                loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


def test_each_teacher_gets_its_own_normalisation(two_normalisations):
    """Only the caffe-style teacher gets a remapped batch."""
    model = two_normalisations
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    data = dict(inputs=[img], data_samples=None)
    x = model.data_preprocessor(data)['inputs']
    caffe = model.teachers['caffe']
    torch.testing.assert_close(
        model._teacher_inputs(x, 'caffe'),
        caffe.data_preprocessor(data)['inputs'])
    assert model._teacher_inputs(x, 'same') is x
    got = model.teacher_features(x, teacher='caffe')['neck']
    with torch.no_grad():
        expect = caffe.neck(
            caffe.backbone(caffe.data_preprocessor(data)['inputs']))
    for a, b in zip(got, expect):
        torch.testing.assert_close(a, b)
    # the widths of the second term came from the 'same' teacher (16)
    assert model.distill_pairs['b'].connector.out_channels == 16


def test_teacher_eval_feeds_each_teacher_its_normalisation(two_normalisations):
    """TeacherEvalHook's swap runs a teacher on what it sees in training."""
    from mmkd_channel.engine.hooks.teacher_eval_hook import teacher_as_student
    model = two_normalisations
    x = torch.rand(2, 3, 16, 16)
    for name, teacher in model.teachers.items():
        with torch.no_grad(), teacher_as_student(model, name) as t:
            assert t is teacher
            got = model(x, mode='tensor')
            expect = teacher(model._teacher_inputs(x, name), mode='tensor')
        torch.testing.assert_close(got, expect)
    assert not torch.equal(model._teacher_inputs(x, 'caffe'),
                           x)  # a real remap was tested
    torch.testing.assert_close(
        model(x, mode='tensor'), model.student(x, mode='tensor'))
