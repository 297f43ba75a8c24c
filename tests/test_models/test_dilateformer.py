import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis import count_flops
from mmvit_ext.attention import GlobalAttention
from mmvit_ext.attention.global_attention import global_attention_reference
from mmvit_ext.models.backbones import DilateFormer

OFFICIAL = {  # params of the ImageNet classifier, GMACs at 224 (fvcore) -- spec section 3
    'tiny': (17_238_744, 3.18),
    'small': (24_057_504, 4.61),
    'base': (47_432_376, 9.96),
}


class Classifier(nn.Module):
    """The official classifier's shape: backbone -> final LN (norm3) -> mean -> Linear."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = DilateFormer(arch, out_indices=(3, ))
        self.head = nn.Linear(self.backbone.embed_dims[3], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[0].mean((2, 3)))


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_params_equal_official_and_flops_within_2_percent(arch):
    params, gmacs = OFFICIAL[arch]
    model = Classifier(arch)
    assert sum(p.numel() for p in model.parameters()) == params
    flops = count_flops(model, input_shape=(3, 224, 224))['flops'] / 1e9
    assert abs(flops - gmacs) / gmacs < 0.02, flops


def test_arch_aliases_custom_dict_and_errors():
    assert DilateFormer('t').embed_dims == DilateFormer('tiny').embed_dims == [72, 144, 288, 576]
    m = DilateFormer(dict(embed_dims=24, depths=(1, 1, 1, 1), num_heads=(3, 3, 6, 6)))
    assert m.embed_dims == [24, 48, 96, 192]
    with pytest.raises(ValueError, match="unknown DilateFormer arch 'huge'"):
        DilateFormer('huge')
    with pytest.raises(ValueError, match='lacks'):
        DilateFormer(dict(embed_dims=24, depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='out_indices'):
        DilateFormer('tiny', out_indices=(4, ))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        DilateFormer('tiny')(torch.randn(3, 32, 32))


def test_spec_structure_details():
    m = DilateFormer('tiny', drop_path_rate=0.1)
    # stem: 4 convs without bias, BN+GELU after the first three only
    convs = [l for l in m.stem if isinstance(l, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 72]
    assert all(c.bias is None for c in convs) and not isinstance(m.stem[-1], nn.BatchNorm2d)
    blocks = [b for s in m.stages for b in s.blocks]
    assert [b.attn_type for b in blocks] == ['msda'] * 4 + ['global'] * 8
    assert blocks[0].norm1.eps == 1e-6
    dpr = [b.drop_path.drop_prob for b in blocks]
    assert dpr[0] == 0 and abs(dpr[-1] - 0.1) < 1e-7 and dpr == sorted(dpr)
    assert all(d.conv.bias is not None and d.conv.stride == (2, 2) for d in m.downsamples)
    assert blocks[0].attn.dilations == (1, 2, 3) and blocks[0].cpe.groups == 72


@pytest.mark.parametrize('size,expected', [
    ((255, 255), [(64, 64), (32, 32), (16, 16), (8, 8)]),
    ((112, 137), [(28, 35), (14, 18), (7, 9), (4, 5)]),
    ((512, 683), [(128, 171), (64, 86), (32, 43), (16, 22)]),
    ((800, 1333), [(200, 334), (100, 167), (50, 84), (25, 42)]),
])
def test_any_input_size(size, expected):
    m = DilateFormer('tiny').eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [72, 144, 288, 576]


def test_out_indices_and_per_output_norms():
    m = DilateFormer('tiny', out_indices=(1, 3))
    assert hasattr(m, 'norm1') and hasattr(m, 'norm3') and not hasattr(m, 'norm0')
    outs = m(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [144, 576]
    # taps are before the downsampler: stage-1 output at stride 8
    assert outs[0].shape[2:] == (8, 8)


def test_frozen_stages_and_norm_eval():
    m = DilateFormer('tiny', frozen_stages=2, norm_eval=True)
    m.train()
    assert not any(p.requires_grad for p in m.stem.parameters())
    for i in range(2):
        assert not any(p.requires_grad for p in m.stages[i].parameters())
        assert not any(p.requires_grad for p in m.downsamples[i].parameters())
        assert not any(p.requires_grad for p in getattr(m, f'norm{i}').parameters())
    assert all(p.requires_grad for p in m.stages[2].parameters())
    assert all(not bn.training for bn in m.modules() if isinstance(bn, nn.BatchNorm2d))
    assert m.stages[2].training
    all_frozen = DilateFormer('tiny', frozen_stages=4).train()
    assert not any(p.requires_grad for p in all_frozen.parameters())


def test_layer_depth_for_layer_wise_decay():
    m = DilateFormer('tiny')
    n = sum(m.depths) + 2
    assert m.get_layer_depth('backbone.stem.0.weight', 'backbone.') == (0, n)
    assert m.get_layer_depth('backbone.stages.0.blocks.0.norm1.weight', 'backbone.') == (1, n)
    assert m.get_layer_depth('backbone.stages.3.blocks.1.mlp.fc1.weight', 'backbone.') == (12, n)
    assert m.get_layer_depth('backbone.norm3.weight', 'backbone.') == (n - 1, n)


def test_global_attention_matches_reference():
    torch.manual_seed(0)
    attn = GlobalAttention(48, 4).eval()
    x = torch.randn(2, 29, 48)
    qkv = attn.qkv(x).reshape(2, 29, 3, 4, 12).permute(2, 0, 3, 1, 4)
    ref = global_attention_reference(qkv[0], qkv[1], qkv[2], 12**-0.5)
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 29, 48))
    assert torch.allclose(attn(x), ref, atol=1e-5)
