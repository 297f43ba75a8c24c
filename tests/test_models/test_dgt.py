"""DGT-style backbone: sizes vs Swin's compute, structure, any input size, the mmdet contract."""
import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis import count_flops
from mmvit_ext.attention import DynamicGroupAttention
from mmvit_ext.models.backbones import DGT

SWIN_GMACS = {'tiny': 4.5, 'small': 8.7, 'base': 15.4}  # Swin-T/S/B at 224, what DGT is sized to
TINY = dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
            num_groups=(4, 4, 2, 1), topk=(16, 16, 8, None), stem_channels=8)


class Classifier(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.backbone = DGT(arch, out_indices=(3, ))
        self.head = nn.Linear(self.backbone.embed_dims[3], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[0].mean((2, 3)))


@pytest.mark.parametrize('arch', list(SWIN_GMACS))
def test_compute_matches_swin_at_224(arch):
    model = Classifier(arch)
    r = count_flops(model, input_shape=(3, 224, 224))
    assert abs(r['flops'] / 1e9 - SWIN_GMACS[arch]) / SWIN_GMACS[arch] < 0.03
    # the attention over the selected keys is counted, analytically, for every block
    exact = [m.exact_attention_flops for m in model.modules()
             if isinstance(m, DynamicGroupAttention)]
    assert len(exact) == sum(model.backbone.depths) and all(e > 0 for e in exact)
    assert r['attention_flops'] > sum(exact) > 0.05 * r['flops']


def test_structure():
    m = DGT('tiny')
    assert m.depths == (3, 4, 12, 3) and m.embed_dims == [64, 128, 256, 512]
    blk = m.stages[0][0]
    assert isinstance(blk.attn, DynamicGroupAttention)
    assert (blk.attn.num_groups, blk.attn.topk) == (16, 256)
    assert (m.stages[3][0].attn.num_groups, m.stages[3][0].attn.topk) == (1, None)  # global
    assert blk.cpe.groups == 64 and blk.cpe.kernel_size == (3, 3)  # conditional position enc.
    assert blk.ffn.dwconv.groups == 256 and isinstance(blk.ffn.norm3, nn.BatchNorm2d)
    assert isinstance(blk.ffn.fc1, nn.Linear) and blk.ffn.fc1.out_features == 256
    assert [type(x) for x in m.stem[0]] == [nn.Conv2d, nn.GELU, nn.BatchNorm2d]
    assert m.stem[0][0].stride == (2, 2) and m.stem[1][0].stride == (1, 1)
    dpr = [b.drop_path.drop_prob for s in m.stages for b in s]
    assert dpr[0] == 0 and abs(dpr[-1] - 0.1) < 1e-7 and len(dpr) == 22


@pytest.mark.parametrize('size,expected', [
    ((224, 224), [(56, 56), (28, 28), (14, 14), (7, 7)]),
    ((97, 131), [(25, 33), (13, 17), (7, 9), (4, 5)]),
    ((33, 65), [(9, 17), (5, 9), (3, 5), (2, 3)]),
])
def test_any_input_size(size, expected):
    m = DGT(TINY).eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]


def test_detection_like_size_runs_with_the_real_tiny():
    m = DGT('tiny').eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, 320, 480))
    assert [tuple(o.shape[2:]) for o in outs] == [(80, 120), (40, 60), (20, 30), (10, 15)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_eval_is_repeatable():
    m = DGT(TINY).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m(x), m(x)))


def test_arch_errors():
    assert DGT('s').embed_dims == [96, 192, 384, 768]
    with pytest.raises(ValueError, match="unknown DGT arch 'huge'"):
        DGT('huge')
    with pytest.raises(ValueError, match='lacks'):
        DGT(dict(embed_dims=(8, 16, 32, 64)))
    with pytest.raises(ValueError, match="'depths' takes 4 values, one per stage"):
        DGT(dict(TINY, depths=(1, 1, 1)))
    with pytest.raises(ValueError, match='out_indices'):
        DGT(TINY, out_indices=(4, ))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        DGT(TINY)(torch.randn(3, 32, 32))


def test_out_indices_and_stage_norms():
    m = DGT(TINY, out_indices=(1, 3))
    outs = m(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128] and outs[0].shape[2:] == (8, 8)
    assert not hasattr(m, 'norm0')
    m2 = DGT(TINY, out_indices=(0, )).eval()
    with torch.no_grad():
        out = m2(torch.randn(1, 3, 64, 64))[0]
    assert torch.allclose(out.mean(1), torch.zeros(16, 16), atol=1e-5)  # LayerNorm output


def test_frozen_stages():
    m = DGT(TINY, frozen_stages=2).train()
    assert not any(p.requires_grad for p in m.stem.parameters()) and not m.stem.training
    for i in range(2):
        for mod in (m.patch_convs[i], m.stages[i], getattr(m, f'norm{i}')):
            assert not any(p.requires_grad for p in mod.parameters()) and not mod.training
    assert all(p.requires_grad for p in m.stages[2].parameters()) and m.stages[2].training
    assert not any(p.requires_grad for p in DGT(TINY, frozen_stages=4).train().parameters())


def test_layer_depth_for_layer_wise_decay():
    m = DGT('tiny')
    n = 22 + 2
    assert m.get_layer_depth('backbone.stem.0.0.weight', 'backbone.') == (0, n)
    assert m.get_layer_depth('backbone.patch_convs.0.proj.weight', 'backbone.') == (1, n)
    assert m.get_layer_depth('backbone.stages.0.0.attn.qkv.weight', 'backbone.') == (1, n)
    assert m.get_layer_depth('backbone.patch_convs.1.norm.weight', 'backbone.') == (4, n)
    assert m.get_layer_depth('backbone.stages.3.2.ffn.fc2.weight', 'backbone.') == (22, n)
    assert m.get_layer_depth('backbone.norm3.weight', 'backbone.') == (n - 1, n)


def test_scratch_init_and_pretrained_loading(tmp_path):
    m = DGT(TINY)
    m.init_weights()
    w = m.stages[2][0].attn.qkv.weight
    assert abs(w.std().item() - 0.02) < 0.004 and torch.all(m.stages[2][0].attn.qkv.bias == 0)
    path = tmp_path / 'dgt.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in m.state_dict().items()}}, path)
    m2 = DGT(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    m2.init_weights()
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    from mmvit_ext.checkpoints import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        DGT(dict(TINY, embed_dims=(16, 32, 64, 256)),
            init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    with pytest.raises(ValueError, match='cannot be set at the same time'):
        DGT(TINY, pretrained='x.pth', init_cfg=dict(type='Pretrained', checkpoint='y.pth'))
