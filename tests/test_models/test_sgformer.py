import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis import count_flops
from mmvit_ext.models.backbones import SGFormer
from mmvit_ext.models.backbones.sgformer import sincos_pos_embed_2d

OFFICIAL = {  # ImageNet classifier params (pos_embed included), GMACs at 224 -- spec section 3
    's': (22_545_981, 4.82),
    'm': (38_689_316, 7.47),
    'b': (77_950_293, 15.61),
}
TINY = dict(embed_dims=(16, 32, 64, 128), depths=(2, 2, 2, 1), num_heads=(2, 2, 4, 4))


class Classifier(nn.Module):
    """The official classifier: backbone -> norm4 -> mean over tokens -> Linear."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = SGFormer(arch, out_indices=(3, ))
        self.head = nn.Linear(self.backbone.embed_dims[3], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[0].mean((2, 3)))


@pytest.mark.parametrize('arch', ['s', 'm', 'b'])
def test_params_equal_official_and_flops_within_2_percent(arch):
    params, gmacs = OFFICIAL[arch]
    model = Classifier(arch)
    assert sum(p.numel() for p in model.parameters()) == params
    flops = count_flops(model, input_shape=(3, 224, 224))['flops'] / 1e9
    assert abs(flops - gmacs) / gmacs < 0.02, flops


def test_arch_aliases_custom_dict_and_errors():
    assert SGFormer('s').embed_dims == SGFormer('small').embed_dims == [64, 128, 256, 512]
    assert SGFormer(TINY).depths == (2, 2, 2, 1)
    with pytest.raises(ValueError, match="unknown SGFormer arch 'xl'"):
        SGFormer('xl')
    with pytest.raises(ValueError, match='lacks'):
        SGFormer(dict(embed_dims=(16, 32, 64, 128), depths=(2, 2, 2, 1)))
    with pytest.raises(ValueError, match='even'):
        SGFormer(dict(TINY, num_heads=(1, 2, 4, 4)))
    with pytest.raises(ValueError, match='sr_ratios'):
        SGFormer(dict(TINY, sr_ratios=(8, 4, 2, 2)))
    with pytest.raises(ValueError, match='out_indices'):
        SGFormer(TINY, out_indices=(4, ))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        SGFormer(TINY)(torch.randn(3, 32, 32))


def test_spec_structure_details():
    m = SGFormer('s', drop_path_rate=0.1)
    kinds = [[b.attn_type[0] for b in stage] for stage in m.stages]
    assert kinds == [list('hg'), list('hghg'), list('hg' * 8), ['f']]
    assert all(isinstance(u.norm, nn.GroupNorm) and u.norm.num_groups == 1
               for u in m.stem.layers if not isinstance(u, nn.GELU))
    assert all(u.conv.bias is None for u in m.stem.layers if not isinstance(u, nn.GELU))
    assert m.stem.norm.eps == 1e-5 and m.stages[0][0].norm1.eps == 1e-6 and m.norm3.eps == 1e-6
    assert m.downsamples[0].conv2.conv.groups == 128 and m.downsamples[0].conv2.conv.stride == (2, 2)
    assert m.pos_embed.requires_grad and m.pos_embed.shape == (1, 3136, 64)
    assert [m.stages[i][0].attn.sr_ratio for i in range(3)] == [8, 4, 2]
    assert [[lin.in_features for lin in m.stages[i][1].attn.merges] for i in range(3)] == \
        [[196, 56, 28], [49, 14, 7], [2, 1]]
    dpr = [b.drop_path.drop_prob for s in m.stages for b in s]
    assert dpr[0] == 0 and abs(dpr[-1] - 0.1) < 1e-7 and dpr == sorted(dpr)


def test_sincos_position_table_layout():
    """Channels [0, C/2) encode the column, [C/2, C) the row, each as [sin, cos] (MAE layout)."""
    table = sincos_pos_embed_2d(8, (3, 4)).reshape(3, 4, 8)
    col, row = torch.arange(4.), torch.arange(3.)
    assert torch.allclose(table[0, :, 0], col.sin()) and torch.allclose(table[0, :, 2], col.cos())
    assert torch.allclose(table[:, 0, 4], row.sin()) and torch.allclose(table[:, 0, 6], row.cos())
    assert torch.allclose(table[0, :, 1], (col * 0.01).sin())  # omega_1 = 10000^(-1/2)


@pytest.mark.parametrize('size,expected', [
    ((224, 224), [(56, 56), (28, 28), (14, 14), (7, 7)]),
    ((255, 255), [(64, 64), (32, 32), (16, 16), (8, 8)]),
    ((112, 137), [(28, 35), (14, 18), (7, 9), (4, 5)]),
    ((512, 512), [(128, 128), (64, 64), (32, 32), (16, 16)]),
    ((33, 65), [(9, 17), (5, 9), (3, 5), (2, 3)]),
])
def test_any_input_size(size, expected):
    m = SGFormer(TINY).eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]
    assert all(torch.isfinite(o).all() for o in outs)


def test_detection_size_runs_with_the_small_variant():
    m = SGFormer('s').eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 800, 1333))
    assert [tuple(o.shape[2:]) for o in outs] == [(200, 334), (100, 167), (50, 84), (25, 42)]


def test_nothing_is_padded_or_resized_at_official_sizes(monkeypatch):
    """At 224*k every window, reduction and merge group divides exactly: the official path."""
    calls = []
    real_pad = torch.nn.functional.pad
    monkeypatch.setattr(torch.nn.functional, 'pad',
                        lambda *a, **k: calls.append(1) or real_pad(*a, **k))
    m = SGFormer('s').eval()
    with torch.no_grad():
        m(torch.randn(1, 3, 224, 224))
        assert calls == []
        assert m.resized_pos_embed((56, 56)) is m.pos_embed
        m(torch.randn(1, 3, 448, 224))
        assert calls == []
        m(torch.randn(1, 3, 240, 224))
    assert calls  # 60x56 at stride 4 does need window padding


def test_pos_embed_is_resized_bicubically_to_the_input_grid():
    m = SGFormer(TINY)
    resized = m.resized_pos_embed((28, 28))
    assert resized.shape == (1, 784, 16)
    table = m.pos_embed.reshape(1, 56, 56, 16).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(table, size=(28, 28), mode='bicubic',
                                               align_corners=False)
    assert torch.allclose(resized, expected.flatten(2).transpose(1, 2))


def test_significance_maps_are_collected_per_hybrid_block():
    m = SGFormer(TINY).eval()
    maps = []
    with torch.no_grad():
        m(torch.randn(2, 3, 96, 80), significance_maps=maps)
    assert [(s, b) for s, b, _ in maps] == [(0, 0), (1, 0), (2, 0)]
    assert [tuple(t.shape) for _, _, t in maps] == [(2, 24, 20), (2, 12, 10), (2, 6, 5)]
    assert all((t >= 0).all() for _, _, t in maps)


def test_out_indices_and_stage_norms():
    m = SGFormer(TINY, out_indices=(1, 3))
    outs = m(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128] and outs[0].shape[2:] == (8, 8)
    # each output is its stage's LayerNorm: per-token channel mean ~ bias mean
    m2 = SGFormer(TINY, out_indices=(0, )).eval()
    with torch.no_grad():
        m2.norm0.weight.fill_(1.)
        m2.norm0.bias.fill_(0.)
        out = m2(torch.randn(1, 3, 64, 64))[0]
    assert torch.allclose(out.mean(1), torch.zeros(16, 16), atol=1e-5)


def test_frozen_stages():
    m = SGFormer(TINY, frozen_stages=2).train()
    assert not m.pos_embed.requires_grad
    assert not any(p.requires_grad for p in m.stem.parameters())
    for i in range(2):
        assert not any(p.requires_grad for p in m.stages[i].parameters())
        assert not any(p.requires_grad for p in getattr(m, f'norm{i}').parameters())
    assert not any(p.requires_grad for p in m.downsamples[0].parameters())
    assert all(p.requires_grad for p in m.downsamples[1].parameters())
    assert m.stages[2].training and not m.stages[1].training
    assert not any(p.requires_grad for p in SGFormer(TINY, frozen_stages=4).train().parameters())


def test_layer_depth_for_layer_wise_decay():
    m = SGFormer('s')
    n = sum(m.depths) + 2
    assert m.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, n)
    assert m.get_layer_depth('backbone.stem.layers.0.conv.weight', 'backbone.') == (0, n)
    assert m.get_layer_depth('backbone.stages.0.0.norm1.weight', 'backbone.') == (1, n)
    assert m.get_layer_depth('backbone.downsamples.0.conv1.conv.weight', 'backbone.') == (2, n)
    assert m.get_layer_depth('backbone.stages.3.0.mlp.fc1.weight', 'backbone.') == (23, n)
    assert m.get_layer_depth('backbone.norm3.weight', 'backbone.') == (n - 1, n)


def test_scratch_init_follows_official_scheme():
    m = SGFormer(TINY)
    with torch.no_grad():
        m.pos_embed.zero_()
    m.init_weights()
    assert torch.allclose(m.pos_embed[0], sincos_pos_embed_2d(16, (56, 56)))
    w = m.stages[2][0].mlp.fc1.weight  # timm's trunc_normal_(std=.02): cut at +-2, not +-2 std
    assert abs(w.std().item() - 0.02) < 0.002
    conv = m.stages[2][0].mlp.dwconv  # normal(0, sqrt(2 / fan_out)), fan_out = 9 * 256 / 256
    assert abs(conv.weight.std().item() - (2 / 9)**0.5) < 0.05
    assert torch.all(m.stages[0][0].attn.global_q.bias == 0)
