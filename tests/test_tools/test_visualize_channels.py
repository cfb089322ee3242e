"""tools/analysis_tools/visualize_channels.py draws a sensible PNG."""
import doctest
import importlib.util
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmkd_channel.models.distillers.distill_pair import DistillPair as _Pair
from mmkd_channel.testing.tiny_configs import tiny_det_config

TOOL = 'tools/analysis_tools/visualize_channels.py'
CONFIG = 'configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py'


@pytest.fixture(scope='module')
def tool(repo_root):
    spec = importlib.util.spec_from_file_location('visualize_channels',
                                                  osp.join(repo_root, TOOL))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frcnn_cwt_png(repo_root, coco_data, tmp_path):
    cfg = tiny_det_config(
        Config.fromfile(osp.join(repo_root, CONFIG)), coco_data,
        str(tmp_path / 'work'))
    cfg_path = str(tmp_path / 'cwt_frcnn_tiny.py')
    cfg.dump(cfg_path)
    img = osp.join(coco_data['data_root'], coco_data['val_img'],
                   '000000000001.jpg')
    out = tmp_path / 'channels.png'
    proc = subprocess.run([
        sys.executable, TOOL, cfg_path, '--img', img, '--out',
        str(out), '--level', '1', '--topk', '3', '--cfg-options',
        'model.teacher_ckpt=None'
    ],
                          cwd=repo_root,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file()
    with Image.open(out) as im:
        w, h = im.size
        pixels = np.asarray(im.convert('RGB'), dtype=np.float64)
    # 3 columns (teacher, raw student, CWT(student)) of 3 in at 100 dpi;
    # a header plus 3 rows of square 16x16 maps (FPN level 1 of 64 px)
    assert w == 900
    assert 800 <= h <= 1400
    assert pixels.std() > 0
    # every row has coloured map content, not only white background
    assert (pixels.std(axis=2) > 20).mean() > 0.05


def _pair(connector=None, loss=None):
    return _Pair('p', 'neck', 'neck', connector, None, loss
                 or dict(type='FeatureL2Loss'))


def test_mismatched_channels_use_most_correlated_student(tool):
    torch.manual_seed(0)
    t = torch.rand(1, 8, 6, 6)
    ramp = torch.arange(6.)
    t[0, 5] = 5 + ramp[:, None] + 2 * ramp  # the most energetic channel
    s = torch.rand(1, 4, 3, 3)
    # student channel 2 is teacher channel 5 at half resolution, negated
    s[0, 2] = -torch.nn.functional.avg_pool2d(t[:, 5:6], 2)[0, 0]
    pair = _pair(
        dict(type='ChannelWiseTransform', in_channels=4, out_channels=8))
    rows, facts = tool.channel_rows(pair, s, t, level=0, topk=2)
    assert facts['channels'][0] == 5 and len(rows) == 2
    teacher, raw, trans = rows[0]
    assert torch.equal(teacher['map'], t[0, 5])
    assert 'raw student ch 2' in raw['title']
    assert 'most correlated' in raw['title']
    r = float(re.search(r'r=(-?[\d.]+)', raw['title']).group(1))
    assert -1.0 <= r < -0.95
    assert torch.equal(raw['map'], s[0, 2])
    # the connector output has the teacher's channels: same index, and
    # the same colour scale as the teacher
    assert 'ChannelWiseTransform(student)' in trans['title']
    assert trans['map'].shape == (3, 3) and trans['scale'] == teacher['scale']


def test_cwd_rows_show_spatial_softmax(tool):
    torch.manual_seed(0)
    t, s = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5)
    pair = _pair(loss=dict(type='ChannelWiseDivergence', tau=2.0))
    rows, facts = tool.channel_rows(pair, (s, s), (t, t), level=1, topk=5)
    assert len(rows) == 3 and facts['levels'] == 2
    energy = t[0].pow(2).flatten(1).mean(1)
    assert facts['channels'] == energy.argsort(descending=True).tolist()
    c = facts['channels'][0]
    teacher, student, p_t, p_s = rows[0]
    assert 'no connector' in student['title']
    torch.testing.assert_close(
        p_t['map'],
        torch.softmax(t[0, c].flatten() / 2.0, 0).view(4, 5))
    torch.testing.assert_close(p_s['map'].sum(), torch.tensor(1.0))
    assert 'softmax(x/2)' in p_t['title']


def test_non_spatial_features_are_refused(tool):
    pair = _pair()
    with pytest.raises(ValueError, match='spatial'):
        tool.channel_rows(pair, torch.rand(1, 4), torch.rand(1, 4), 0, 2)
    with pytest.raises(IndexError, match='2 levels'):
        tool.pick_level((1, 2), 5, 'teacher')


def test_1x1_features_are_drawn_per_channel(tool, tmp_path):
    """A classifier's last stage on a small input: 1x1 maps become bars and
    a student-vs-teacher scatter, not solid squares."""
    torch.manual_seed(0)
    t = torch.randn(1, 16, 1, 1)
    s = torch.randn(1, 8, 1, 1)
    pair = _pair(
        dict(type='ChannelWiseTransform', in_channels=8, out_channels=16))
    assert tool.as_vector(t).shape == (16, )
    values, facts = tool.channel_values(pair, s, t, level=0)
    torch.testing.assert_close(values['teacher'], t[0, :, 0, 0])
    torch.testing.assert_close(values['student'], s[0, :, 0, 0])
    with torch.no_grad():
        expected = pair.connector(s)[0, :, 0, 0]
    torch.testing.assert_close(values['transformed'], expected)
    out = tmp_path / 'vectors.png'
    img = np.zeros((32, 32, 3), np.uint8)
    titles = tool.draw_vectors(values, facts, img, str(out), 'x', topk=10)
    assert titles[0] == 'per-channel values, top 10 of 16 teacher channels'
    r = tool.pearson(expected, t[0, :, 0, 0])
    assert titles[1] == ('ChannelWiseTransform(student) vs teacher\nall 16 '
                         f'channels, r={r:.2f}')
    # the raw student has 8 channels: drawn on its own, not paired
    assert titles[2].startswith('raw student: 8 channels')
    with Image.open(out) as im:
        assert im.size[0] >= 900
    # pooled (N, C) vectors too; spatial maps are not vectors
    assert tool.as_vector(torch.ones(2, 5)).shape == (5, )
    with pytest.raises(ValueError, match='not 1x1 or pooled'):
        tool.channel_values(_pair(), torch.rand(1, 4, 3, 3),
                            torch.rand(1, 4, 3, 3), 0)


def test_own_colour_scale_unless_shared(tool, tmp_path, monkeypatch):
    """Every map gets its own colour limits by default; --shared-scale
    puts the teacher and the compared student map on one."""
    import matplotlib.axes
    seen = []
    original = matplotlib.axes.Axes.imshow

    def imshow(self, data, *args, **kwargs):
        seen.append((float(np.min(data)), float(np.max(data)),
                     kwargs.get('vmin'), kwargs.get('vmax')))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, 'imshow', imshow)
    t = torch.arange(16.).view(1, 1, 4, 4)
    s = 0.01 * torch.arange(16.).view(1, 1, 4, 4)  # a hundredth
    pair = _pair(dict(type='ConvBNConnector', in_channels=1, out_channels=1))
    rows, facts = tool.channel_rows(pair, s, t, level=0, topk=1)
    img = np.zeros((8, 8, 3), np.uint8)
    tool.draw(rows, facts, img, str(tmp_path / 'own.png'), 'x')
    maps = seen[1:]  # after the input image
    assert len(maps) == 3 and all(v[2] is None for v in maps)
    seen.clear()
    tool.draw(
        rows, facts, img, str(tmp_path / 'shared.png'), 'x', shared_scale=True)
    teacher, raw, trans = seen[1:]
    assert teacher[2:] == trans[2:] and teacher[2] is not None
    assert raw[2] is None  # the raw student keeps its own scale


def test_checkpoint_is_loaded_into_the_distiller(tool, tmp_path):
    import toy_models  # noqa: F401  (registers ToyClassifier)
    cfg = Config(
        dict(
            model=dict(
                type='mmkd_channel.FeatureDistiller',
                student=toy_models.toy_cfg(),
                teacher=toy_models.toy_cfg(width=16),
                distill=dict(
                    neck=dict(
                        student='neck',
                        connector=dict(
                            type='ChannelWiseTransform',
                            in_channels=8,
                            out_channels=16),
                        loss=dict(type='FeatureL2Loss'))))))
    model = tool.build_distiller(cfg)
    state = model.state_dict()
    assert not any(k.startswith('teacher.') for k in state)
    state = {
        k: torch.full_like(v, 0.5) if v.is_floating_point() else v
        for k, v in state.items()
    }
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(), state_dict=state), ckpt)
    loaded = tool.build_distiller(cfg, str(ckpt))
    assert not loaded.training
    for k, v in loaded.state_dict().items():
        if v.is_floating_point():
            assert torch.all(v == 0.5), k


def test_docstring_examples_run(tool):
    # the examples stand where the helpers are defined, beside the script
    features = sys.modules[tool.as_vector.__module__]
    result = doctest.testmod(features)
    assert result.attempted > 0 and result.failed == 0
