"""A teacher that normalises differently gets its own normalisation."""
import torch
from toy_models import toy_cfg

from mmkd_channel.models import FeatureDistiller

STUDENT_DP = dict(
    type='ImgDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)
CAFFE_DP = dict(  # mmdet's caffe-style ResNets: BGR, std 1
    type='ImgDataPreprocessor',
    mean=[103.53, 116.28, 123.675],
    std=[1.0, 1.0, 1.0],
    bgr_to_rgb=False)


def make(teacher_dp):
    student = dict(toy_cfg(8), data_preprocessor=STUDENT_DP)
    teacher = dict(toy_cfg(8), data_preprocessor=teacher_dp)
    return FeatureDistiller(
        student=student,
        teacher=teacher,
        distill=dict(f=dict(student='neck', loss=dict(type='FeatureL2Loss'))),
        check_input_shape=(1, 3, 16, 16))


def test_teacher_sees_its_own_normalisation_of_the_same_image():
    model = make(CAFFE_DP)
    assert model.teacher_input is not None and model.teacher_input.flip
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    data = dict(inputs=[img], data_samples=None)
    student_batch = model.data_preprocessor(data)['inputs']
    teacher_batch = model.teacher.data_preprocessor(data)['inputs']
    torch.testing.assert_close(
        model._teacher_inputs(student_batch), teacher_batch)
    # and that is what the teacher's recorded features come from
    with torch.no_grad():
        expect = model.teacher.neck(model.teacher.backbone(teacher_batch))
    got = model.teacher_features(student_batch)['neck']
    for a, b in zip(got, expect):
        torch.testing.assert_close(a, b)


def test_same_normalisation_is_left_alone():
    model = make(STUDENT_DP)
    assert model.teacher_input is None
    x = torch.rand(1, 3, 16, 16)
    assert model._teacher_inputs(x) is x
