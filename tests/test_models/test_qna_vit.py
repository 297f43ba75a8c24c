"""QnA-ViT backbone: exact parameter counts, structure, any size, MSA modes, the mmdet contract."""
import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis import count_flops
from mmvit_ext.attention import attention_form
from mmvit_ext.attention.qna import WindowMSA
from mmvit_ext.models.backbones import QnAViT

OFFICIAL = {  # ImageNet classifier params (spec 3.3), README GFLOPs at 224
    'tiny': (15_715_560, 2.5),
    'tiny_7x7': (15_753_960, 2.6),
    'small': (24_971_560, 4.4),
    'base': (55_670_008, 9.7),
}


class Classifier(nn.Module):
    """Official head: LayerNorm (our norm3) -> global average pool -> Dense."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = QnAViT(arch, out_indices=(3, ))
        self.head = nn.Linear(self.backbone.embed_dims[3], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[0].mean((2, 3)))


@pytest.mark.parametrize('arch', list(OFFICIAL))
def test_params_equal_official_and_flops_near_the_readme(arch):
    params, gflops = OFFICIAL[arch]
    model = Classifier(arch)
    assert sum(p.numel() for p in model.parameters()) == params
    flops = count_flops(model, input_shape=(3, 224, 224))['flops'] / 1e9
    assert 0.95 * gflops < flops <= gflops  # exp/softmax/norms are not counted


def test_block_order_and_drop_path_slots():
    m = QnAViT('tiny', drop_path_rate=0.05)
    kinds = [[b.kind for b in s] for s in m.stages]
    assert kinds == [['qna', 'qna', 'down'], ['qna'] * 3 + ['down'],
                     ['msa'] * 4 + ['qna'] * 2 + ['down'], ['msa'] * 2]
    dpr = [b.drop_path.drop_prob for s in m.stages for b in s]
    assert len(dpr) == 16 and abs(dpr[2] - 0.05 * 2 / 15) < 1e-7 and abs(dpr[-1] - 0.05) < 1e-7
    assert isinstance(m.stages[0][0].mlp.act, nn.GELU) and m.stages[0][0].mlp.act.approximate == 'tanh'
    assert m.stages[0][0].norm1.eps == 1e-6 and m.stem.bias is None


@pytest.mark.parametrize('size,expected', [
    ((224, 224), [(56, 56), (28, 28), (14, 14), (7, 7)]),
    ((230, 190), [(58, 48), (29, 24), (15, 12), (8, 6)]),
    ((97, 131), [(25, 33), (13, 17), (7, 9), (4, 5)]),
])
def test_any_input_size(size, expected):
    m = QnAViT('tiny').eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512]


def test_global_stage4_equals_windows_at_224():
    torch.manual_seed(0)
    a = QnAViT('tiny').eval()
    b = QnAViT('tiny', msa_modes=('window', 'window', 'global', 'global')).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for oa, ob in zip(a(x), b(x)):
            assert torch.allclose(oa, ob, atol=1e-5)
        x = torch.randn(1, 3, 320, 288)  # stage 4 is 10x9: now they differ
        assert not torch.allclose(a(x)[3], b(x)[3], atol=1e-3)


@pytest.mark.parametrize('form', ['fast', 'traceable'])
@pytest.mark.parametrize('mode', ['window', 'global'])
@pytest.mark.parametrize('hw', [(7, 7), (10, 9), (16, 23)])
def test_window_msa_matches_loop_reference(mode, hw, form):
    torch.manual_seed(0)
    m = WindowMSA(32, 4, 7, mode)
    with torch.no_grad():
        m.rpe_bias.normal_()
    x = torch.randn(2, *hw, 32, requires_grad=True)
    with attention_form(form):
        out = m(x)
    with attention_form('reference'):
        ref = m(x)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [x, m.qkv.weight, m.rpe_bias], g),
                    torch.autograd.grad(ref, [x, m.qkv.weight, m.rpe_bias], g)):
        assert torch.allclose(a, b, atol=1e-4)


TINY = dict(embed_dims=16, qna_depths=(1, 1, 1, 0), msa_depths=(0, 0, 1, 1),
            qna_heads=(2, 4, 8), msa_heads=(0, 0, 2, 4), kernel_size=3)


def test_arch_aliases_custom_dict_and_errors():
    assert QnAViT('t7').stages[0][0].attn.kernel_size == 7
    assert QnAViT('b').embed_dims == [96, 192, 384, 768]
    assert QnAViT(TINY).depths == (2, 2, 3, 1)
    with pytest.raises(ValueError, match="unknown QnAViT arch 'huge'"):
        QnAViT('huge')
    with pytest.raises(ValueError, match='lacks'):
        QnAViT(dict(embed_dims=16, qna_depths=(1, 1, 1, 0)))
    with pytest.raises(ValueError, match='odd kernel_size'):
        QnAViT(dict(TINY, kernel_size=4))
    with pytest.raises(ValueError, match="'window' or 'global'"):
        QnAViT(TINY, msa_modes=('window', 'window', 'shifted', 'window'))
    with pytest.raises(ValueError, match='out_indices'):
        QnAViT(TINY, out_indices=(4, ))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        QnAViT(TINY)(torch.randn(3, 32, 32))


def test_detection_size_runs_with_global_stage4():
    m = QnAViT('tiny', msa_modes=('window', 'window', 'window', 'global')).eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 800, 1333))
    assert [tuple(o.shape[2:]) for o in outs] == [(200, 334), (100, 167), (50, 84), (25, 42)]


def test_nothing_is_padded_at_official_sizes(monkeypatch):
    """At 224*k the stem and every MSA window divide exactly: the official path."""
    import torch.nn.functional as F  # the stem's SAME padding and the MSA windows use F.pad
    calls = []
    real = F.pad
    monkeypatch.setattr(F, 'pad', lambda *a, **k: calls.append(1) or real(*a, **k))
    m = QnAViT(TINY).eval()
    with torch.no_grad():
        m(torch.randn(1, 3, 224, 448))
        assert calls == []
        m(torch.randn(1, 3, 230, 224))
    assert calls  # 230 is neither a multiple of 4 nor of 16 * 14


def test_out_indices_and_stage_norms():
    m = QnAViT(TINY, out_indices=(1, 3))
    outs = m(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128] and outs[0].shape[2:] == (8, 8)
    assert not hasattr(m, 'norm0') and m.norm1.eps == 1e-6
    m2 = QnAViT(TINY, out_indices=(0, )).eval()
    with torch.no_grad():
        m2.norm0.weight.fill_(1.)
        m2.norm0.bias.fill_(0.)
        out = m2(torch.randn(1, 3, 64, 64))[0]
    assert torch.allclose(out.mean(1), torch.zeros(16, 16), atol=1e-5)
    # stopping early: no stage after the last wanted output runs
    m3 = QnAViT(TINY, out_indices=(0, ))
    m3.stages[1].register_forward_pre_hook(lambda *a: (_ for _ in ()).throw(AssertionError))
    m3(torch.randn(1, 3, 32, 32))


def test_taps_are_before_the_downsample_block():
    m = QnAViT(TINY, out_indices=(0, 1)).eval()
    seen = []
    m.stages[0][-1].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        out0 = m(torch.randn(1, 3, 64, 64))[0]
        expected = m.norm0(seen[0]).permute(0, 3, 1, 2)
    assert m.stages[0][-1].kind == 'down' and torch.allclose(out0, expected)


def test_frozen_stages():
    m = QnAViT(TINY, frozen_stages=2).train()
    assert not any(p.requires_grad for p in m.stem.parameters())
    for i in range(2):
        assert not any(p.requires_grad for p in m.stages[i].parameters())
        assert not any(p.requires_grad for p in getattr(m, f'norm{i}').parameters())
        assert not m.stages[i].training
    assert all(p.requires_grad for p in m.stages[2].parameters()) and m.stages[2].training
    assert not any(p.requires_grad for p in QnAViT(TINY, frozen_stages=4).train().parameters())


def test_layer_depth_for_layer_wise_decay():
    m = QnAViT('tiny')
    n = 16 + 2
    assert m.get_layer_depth('backbone.stem.weight', 'backbone.') == (0, n)
    assert m.get_layer_depth('backbone.stages.0.0.attn.query', 'backbone.') == (1, n)
    assert m.get_layer_depth('backbone.stages.1.0.norm1.weight', 'backbone.') == (4, n)
    assert m.get_layer_depth('backbone.stages.3.1.mlp.fc1.weight', 'backbone.') == (16, n)
    assert m.get_layer_depth('backbone.norm3.weight', 'backbone.') == (n - 1, n)
    assert m.get_layer_depth('neck.conv.weight', 'backbone.') == (n - 1, n)


def test_scratch_init_follows_official_scheme():
    m = QnAViT('tiny')
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(3.)
    m.init_weights()
    fc1 = m.stages[2][0].mlp.fc1  # lecun_normal: std sqrt(1 / fan_in), cut at 2 std
    assert abs(fc1.weight.std().item() - 256**-0.5) < 0.1 * 256**-0.5
    assert fc1.weight.abs().max() < 2.28 * 256**-0.5 and torch.all(fc1.bias == 0)
    attn = m.stages[1][0].attn
    assert torch.all(attn.rpe_bias == 0) and abs(attn.attn_scale.std().item() - 0.02) < 0.01
    assert abs(attn.key_weight.std().item() - 128**-0.5) < 0.15 * 128**-0.5
    assert attn.query.abs().max() <= 2 * 8**-0.5 + 1e-6  # head dim 8
    assert torch.all(m.stages[2][0].attn.rpe_bias == 0)
    assert torch.all(m.norm3.weight == 1) and torch.all(m.norm3.bias == 0)
    assert abs(m.stem.weight.std().item() - 48**-0.5) < 0.15 * 48**-0.5


@pytest.mark.parametrize('mode,hw', [('window', (9, 16)), ('global', (11, 23))])
def test_relative_bias_is_the_table_lookup_with_its_gradient(mode, hw):
    """The bias is an embedding lookup (its backward reduces duplicate indices in parallel on
    CUDA); it equals indexing the table by the clamped offsets, value and gradient."""
    torch.manual_seed(0)
    m = WindowMSA(32, 4, 7, mode)
    with torch.no_grad():
        m.rpe_bias.normal_()
    h, w = hw if mode == 'global' else (7, 7)
    bias = m.relative_bias(h, w)
    assert bias.shape == (4, h * w, h * w) and bias.is_contiguous()
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    dy = (ys[:, None] - ys[None]).clamp(-6, 6) + 6
    dx = (xs[:, None] - xs[None]).clamp(-6, 6) + 6
    ref = m.rpe_bias[dy * 13 + dx].permute(2, 0, 1)
    assert torch.equal(bias, ref)
    g = torch.randn_like(bias)
    assert torch.allclose(torch.autograd.grad(bias, m.rpe_bias, g)[0],
                          torch.autograd.grad(ref, m.rpe_bias, g)[0], atol=1e-4)
