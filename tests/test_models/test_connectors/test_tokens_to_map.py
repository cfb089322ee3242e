import copy

import pytest
import torch
from torch import nn

from mmkd_channel.models import TokensToMap
from mmkd_channel.models.connectors.tokens_to_map import find_patch_embed


def tokens_of(grid_map, extra):
    """(N, C, H, W) -> (N, extra + H * W, C) with ``extra`` leading tokens
    filled with a value no patch has, so dropping the wrong ones shows."""
    n, c = grid_map.shape[:2]
    patches = grid_map.flatten(2).transpose(1, 2)  # row-major positions
    lead = torch.full((n, extra, c), 1e3)
    return torch.cat([lead, patches], dim=1)


@pytest.mark.parametrize('extra,grid', [(1, (4, 4)), (2, (3, 5)), (0, (2, 2)),
                                        (5, (6, 4))])
def test_explicit_extra_and_grid_restore_the_map(extra, grid):
    fmap = torch.randn(2, 7, *grid)
    conn = TokensToMap(num_extra_tokens=extra, grid=grid)
    torch.testing.assert_close(conn(tokens_of(fmap, extra)), fmap)


def test_square_grid_guessed_from_the_token_count():
    fmap = torch.randn(1, 3, 4, 4)
    # 17 tokens: 16 patches and a class token
    torch.testing.assert_close(TokensToMap()(tokens_of(fmap, 1)), fmap)
    # DeiT: class and distillation token, given by the model
    conn = TokensToMap()
    conn.model_extra_tokens = 2
    torch.testing.assert_close(conn(tokens_of(fmap, 2)), fmap)


def test_unplaceable_tokens_raise_with_the_fix():
    with pytest.raises(ValueError, match=r'grid=\(H, W\)'):
        TokensToMap(num_extra_tokens=1)(torch.rand(1, 1 + 15, 8))
    with pytest.raises(ValueError, match=r'grid=\(H, W\)'):
        TokensToMap(grid=(4, 4))(torch.rand(1, 15, 8))
    with pytest.raises(ValueError, match='needs no TokensToMap'):
        TokensToMap()(torch.rand(1, 8, 4, 4))
    with pytest.raises(ValueError, match='num_extra_tokens must be'):
        TokensToMap(num_extra_tokens=-1)
    with pytest.raises(ValueError, match='grid must be'):
        TokensToMap(grid=(4, 0))


class TinyViT(nn.Module):
    """A patch embedding (conv), leading tokens and a block."""

    def __init__(self, extra=1, patch=4, channels=6, attr='num_extra_tokens'):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, channels, patch, stride=patch)
        setattr(self, attr, extra)
        self.extra = extra
        self.block = nn.Identity()
        self.grid_seen = None

    def forward(self, x):
        fmap = self.patch_embed.proj(x)
        self.grid_seen = fmap
        tokens = tokens_of(fmap, self.extra)
        return self.block(tokens)


@pytest.mark.parametrize('attr', ['num_extra_tokens', 'num_prefix_tokens'])
def test_bound_model_gives_extra_tokens_and_a_non_square_grid(attr):
    model = nn.Module()
    model.backbone = TinyViT(extra=3, attr=attr)
    conn = TokensToMap()
    conn.bind(None, model, 'x', 'backbone.block', 'feat')
    assert conn.patch_embed_path == 'backbone.patch_embed'
    assert conn.model_extra_tokens == 3
    for size in [(16, 24), (8, 8), (12, 4)]:  # any input size
        out = model.backbone(torch.rand(2, 3, *size))
        torch.testing.assert_close(conn(out), model.backbone.grid_seen)


def test_bound_as_student_connector_reads_the_student():
    student, teacher = nn.Module(), nn.Module()
    student.backbone = TinyViT(extra=1)
    teacher.backbone = TinyViT(extra=2)
    conn = TokensToMap()
    conn.bind(
        student,
        teacher,
        'backbone.block',
        'backbone.block',
        'feat',
        role='student')
    assert conn.model_extra_tokens == 1
    out = student.backbone(torch.rand(1, 3, 8, 12))
    torch.testing.assert_close(conn(out), student.backbone.grid_seen)


def test_later_stage_of_a_hierarchical_model():
    model = nn.Module()
    model.backbone = TinyViT(extra=0)
    conn = TokensToMap()
    conn.bind(None, model, 'x', 'backbone.block', 'feat')
    model.backbone(torch.rand(1, 3, 32, 48))  # patch grid 8 x 12
    stage = torch.randn(1, 5, 2, 3)  # a 1/4 stage of that grid, Swin-like
    torch.testing.assert_close(conn(tokens_of(stage, 0)), stage)


def test_deepcopy_hooks_the_copy():
    model = nn.Module()
    model.backbone = TinyViT(extra=1)
    conn = TokensToMap()
    conn.bind(None, model, 'x', 'backbone.block', 'feat')
    model2, conn2 = copy.deepcopy((model, conn))
    model2.backbone(torch.rand(1, 3, 8, 16))
    assert conn2.patch_grid == (2, 4)
    assert conn.patch_grid is None


def test_find_patch_embed_prefers_the_closest():
    model = nn.Module()
    model.a = TinyViT()
    model.b = TinyViT()
    assert find_patch_embed(model, 'b.block')[0] == 'b.patch_embed'
    assert find_patch_embed(nn.Linear(2, 2), 'x') == (None, None)


@pytest.mark.parametrize(
    'backbone,path',
    [
        (dict(type='VisionTransformer', arch='deit-tiny'), 'ln1'),
        (dict(type='DistilledVisionTransformer', arch='deit-tiny'), 'ln1'),
        (dict(type='ViTEVA02', arch='tiny'), 'ln1'),
        # Swin: a 1/16 stage from the 1/4 patch grid
        (dict(
            type='SwinTransformer',
            arch='tiny',
            window_size=2,
            out_indices=(2, )), 'norm2'),
    ])
def test_host_backbones_own_feature_map(backbone, path):
    """The map equals the one the mmpretrain backbone itself lays out
    (``out_type='featmap'`` / Swin's stage outputs), on a non-square
    input of another size than the backbone was built for."""
    from mmpretrain.registry import MODELS
    cfg = dict(backbone, img_size=64, patch_size=16)
    if backbone['type'] == 'SwinTransformer':
        cfg.pop('patch_size')
    else:
        cfg['out_type'] = 'featmap'
    torch.manual_seed(0)
    model = nn.Module()
    model.backbone = MODELS.build(cfg)
    model.eval()
    conn = TokensToMap()
    conn.bind(None, model, 'x', f'backbone.{path}', 'feat')
    tokens = []
    model.backbone.get_submodule(path).register_forward_hook(
        lambda m, a, out: tokens.append(out))
    with torch.no_grad():
        expect = model.backbone(torch.rand(2, 3, 96, 64))[-1]
    torch.testing.assert_close(conn(tokens[-1]), expect)
