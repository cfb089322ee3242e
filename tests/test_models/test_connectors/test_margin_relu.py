import pytest
import torch
from torch import nn

from mmkd_channel.models import MarginReLU, ofd_margin_from_bn


def test_per_channel_max_with_explicit_margin():
    relu = MarginReLU(margin=[-1.0, -0.5, -2.0])
    x = torch.randn(2, 3, 4, 5) * 3
    expect = x.clone()
    for c, m in enumerate([-1.0, -0.5, -2.0]):
        expect[:, c] = torch.where(x[:, c] > m, x[:, c], torch.tensor(m))
    torch.testing.assert_close(relu(x), expect)


def test_margin_is_a_non_persistent_buffer():
    relu = MarginReLU(margin=[-1.0, -0.5])
    assert dict(relu.named_buffers())['margin'].tolist() == [-1.0, -0.5]
    assert len(relu.state_dict()) == 0
    assert len(list(relu.parameters())) == 0


def test_bind_reads_the_teacher_bn():
    teacher = nn.Sequential()
    teacher.block = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
    with torch.no_grad():
        teacher.block[1].weight.uniform_(0.5, 2)
        teacher.block[1].bias.uniform_(-1, 1)
    relu = MarginReLU()
    relu.bind(
        student=None,
        teacher=teacher,
        student_path='x',
        teacher_path='block.2:input',
        name='s1')
    assert relu.bn_path == 'block.1'
    torch.testing.assert_close(relu.margin,
                               ofd_margin_from_bn(teacher.block[1]))
    with pytest.raises(
            ValueError,
            match=r"distill\['s1'\]\.teacher_"
            r"connector \(MarginReLU\): teacher feature "
            r"'block.0'.*not the output of a BatchNorm"):
        MarginReLU().bind(None, teacher, 'x', 'block.0', 's1')


def test_errors():
    with pytest.raises(RuntimeError, match='MarginReLU has no margin'):
        MarginReLU()(torch.rand(1, 2, 3, 3))
    with pytest.raises(
            ValueError, match='2 channel margins.*'
            r'\(1, 3, 3, 3\)'):
        MarginReLU(margin=[-1, -1])(torch.rand(1, 3, 3, 3))
    with pytest.raises(ValueError, match='finite'):
        MarginReLU(margin=[float('nan')])
