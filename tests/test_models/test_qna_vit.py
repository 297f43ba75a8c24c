"""QnA-ViT backbone (issue 4, in progress): exact parameter counts, sizes, MSA window modes."""
import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis import count_flops
from mmvit_ext.models.attention.qna import WindowMSA
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


@pytest.mark.parametrize('mode', ['window', 'global'])
@pytest.mark.parametrize('hw', [(7, 7), (10, 9), (16, 23)])
def test_window_msa_matches_loop_reference(mode, hw):
    torch.manual_seed(0)
    m = WindowMSA(32, 4, 7, mode)
    with torch.no_grad():
        m.rpe_bias.normal_()
    x = torch.randn(2, *hw, 32, requires_grad=True)
    out, ref = m(x), m.forward_reference(x)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [x, m.to_qkv.weight], g),
                    torch.autograd.grad(ref, [x, m.to_qkv.weight], g)):
        assert torch.allclose(a, b, atol=1e-4)


def test_registered_in_every_framework():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    for registry in (DET, SEG, CLS):
        assert isinstance(registry.build(dict(type='QnAViT', arch='tiny')), QnAViT)
