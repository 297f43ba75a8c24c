import pytest
import torch
import torch.nn.functional as F

from mmvit_ext.attention import MultiScaleDilatedAttention, attention_form, implementations
from mmvit_ext.attention.msda import dilated_local_attention
from mmvit_ext.attention.msda.reference import dilated_local_attention_reference

# NATTEN runs on CUDA only (elsewhere its name falls back to 'fast'): test_msda_natten.py
FORMS = sorted(e.name for es in implementations('msda').values() for e in es
               if e.form != 'reference' and e.name != 'natten')


def _qkv(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize('shape,dilation', [((2, 2, 24, 14, 14), 1), ((1, 1, 8, 7, 9), 2),
                                            ((1, 3, 16, 5, 13), 3), ((2, 1, 4, 3, 2), 3),
                                            ((1, 2, 8, 1, 1), 1)])
@pytest.mark.parametrize('form', FORMS)
def test_every_form_matches_reference_output_and_grads(shape, dilation, form):
    q, k, v = _qkv(shape)
    with attention_form(form):
        fast = dilated_local_attention(q, k, v, 3, dilation, 0.2)
    ref = dilated_local_attention_reference(q, k, v, 3, dilation, 0.2)
    assert fast.shape == ref.shape == q.shape
    assert torch.allclose(fast, ref, atol=1e-5, rtol=0)
    g = torch.randn_like(fast)
    g_fast = torch.autograd.grad(fast, (q, k, v), g)
    g_ref = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_fast_backward_passes_gradcheck_in_double():
    q, k, v = _qkv((1, 2, 3, 5, 6), dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b, c: dilated_local_attention(a, b, c, 3, 2, 0.5), (q, k, v))


def test_zero_padded_border_keys_take_part_in_softmax():
    """The official semantics: at the corner, out-of-map neighbours are zero keys (logit 0)."""
    q, k, v = _qkv((1, 1, 4, 6, 6))
    r, scale = 2, 0.3
    out = dilated_local_attention(q, k, v, 3, r, scale)
    # query at (0, 0): 4 in-map neighbours (0,0), (0,2), (2,0), (2,2); 5 zero-padded ones
    logits, values = [], []
    for di in (-r, 0, r):
        for dj in (-r, 0, r):
            i, j = di, dj
            if 0 <= i < 6 and 0 <= j < 6:
                logits.append((q[0, 0, :, 0, 0] * k[0, 0, :, i, j]).sum() * scale)
                values.append(v[0, 0, :, i, j])
            else:
                logits.append(torch.zeros(()))
                values.append(torch.zeros(4))
    attn = torch.stack(logits).softmax(0)
    expected = (attn[:, None] * torch.stack(values)).sum(0)
    assert torch.allclose(out[0, 0, :, 0, 0], expected, atol=1e-6)
    # masking the padded keys instead would give a different answer
    masked = torch.stack([lg for lg, val in zip(logits, values) if val.abs().sum() > 0]).softmax(0)
    masked_out = (masked[:, None] * torch.stack([val for val in values if val.abs().sum() > 0])).sum(0)
    assert not torch.allclose(out[0, 0, :, 0, 0], masked_out, atol=1e-4)


def _official_style_msda(x, qkv_w, qkv_b, proj, num_heads, dilations):
    """Independent re-derivation of the official module: 1x1 conv qkv, per-group unfold."""
    B, H, W, C = x.shape
    d = C // num_heads
    qkv = F.conv2d(x.permute(0, 3, 1, 2), qkv_w[:, :, None, None], qkv_b)  # B, 3C, H, W
    q, k, v = qkv.chunk(3, dim=1)
    n = len(dilations)
    outs = []
    for g, r in enumerate(dilations):
        sl = slice(g * C // n, (g + 1) * C // n)
        hg = num_heads // n
        qg = q[:, sl].reshape(B, hg, d, H * W).permute(0, 1, 3, 2).unsqueeze(-2)
        ku = F.unfold(k[:, sl], 3, dilation=r, padding=r).reshape(B, hg, d, 9, H * W)
        vu = F.unfold(v[:, sl], 3, dilation=r, padding=r).reshape(B, hg, d, 9, H * W)
        ku, vu = ku.permute(0, 1, 4, 2, 3), vu.permute(0, 1, 4, 3, 2)
        a = ((qg @ ku) * d**-0.5).softmax(-1)
        outs.append((a @ vu).squeeze(-2).permute(0, 2, 1, 3).reshape(B, H, W, C // n))
    return proj(torch.cat(outs, dim=-1))


@pytest.mark.parametrize('C,heads,size', [(72, 3, (14, 14)), (144, 6, (7, 9)), (96, 3, (5, 13))])
def test_module_matches_official_formulation(C, heads, size):
    torch.manual_seed(0)
    attn = MultiScaleDilatedAttention(C, heads).eval()
    x = torch.randn(2, *size, C)
    expected = _official_style_msda(x, attn.qkv.weight, attn.qkv.bias, attn.proj, heads, (1, 2, 3))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_reference_form_and_head_to_dilation_assignment():
    torch.manual_seed(0)
    fast = MultiScaleDilatedAttention(48, 6, dilations=(1, 3)).eval()
    x = torch.randn(1, 9, 11, 48)
    with attention_form('reference'):
        ref = fast(x)
    assert torch.allclose(fast(x), ref, atol=1e-5)
    # swapping the dilation order changes the output: heads 0-2 use dilations[0]
    swapped = MultiScaleDilatedAttention(48, 6, dilations=(3, 1)).eval()
    swapped.load_state_dict(fast.state_dict())
    assert not torch.allclose(fast(x), swapped(x), atol=1e-3)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='multiple of the number of dilations'):
        MultiScaleDilatedAttention(64, 4, dilations=(1, 2, 3))
    with pytest.raises(ValueError, match='divisible by num_heads'):
        MultiScaleDilatedAttention(70, 3)
    q, k, v = _qkv((1, 1, 4, 5, 5))
    with pytest.raises(ValueError, match='odd'):
        dilated_local_attention(q, k, v, 2, 1, 1.0)
    with pytest.raises(ValueError, match='one shape'):
        dilated_local_attention(q, k[..., :4], v, 3, 1, 1.0)


def test_runs_under_autocast_and_stays_close_to_fp32():
    torch.manual_seed(0)
    attn = MultiScaleDilatedAttention(48, 3)
    x = torch.randn(2, 10, 12, 48, requires_grad=True)
    ref = attn(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = attn(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (out.float() - ref).abs().max() < 0.05
