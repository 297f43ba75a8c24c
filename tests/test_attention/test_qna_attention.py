"""QnA layer: the two-depthwise-conv fast form against the explicit neighbourhood softmax."""
import math

import pytest
import torch

from mmvit_ext.analysis.benchmark import saved_activation_bytes
from mmvit_ext.attention import attention_form
from mmvit_ext.attention.forms import implementations
from mmvit_ext.attention.qna import QnAAttention, normalized_queries, qna_attention


def _reference(m, x):
    with attention_form('reference'):
        return m(x)


def _layer(din, feats, heads, k, stride, seed=0):
    torch.manual_seed(seed)
    m = QnAAttention(din, feats, heads, k, stride)
    with torch.no_grad():  # non-trivial relative bias and scales (rpe starts at zero)
        m.rpe_bias.normal_(0, 0.5)
        m.attn_scale.normal_(1, 0.3)
    return m


@pytest.mark.parametrize('hw,k,stride', [((8, 8), 3, 1), ((13, 10), 3, 1), ((9, 11), 7, 1),
                                         ((6, 6), 11, 1), ((13, 10), 3, 2), ((9, 11), 7, 2),
                                         ((1, 1), 3, 1), ((2, 3), 3, 2)])
@pytest.mark.parametrize('form', ['fast', 'traceable', 'compiled', 'lean'])
def test_fast_matches_reference_in_output_and_gradient(hw, k, stride, form):
    m = _layer(16, 32 if stride == 2 else 16, 4 if stride == 2 else 2, k, stride)
    x = torch.randn(2, *hw, 16, requires_grad=True)
    with attention_form(form):
        fast = m(x)
    ref = _reference(m, x)
    Ho, Wo = -(-hw[0] // stride), -(-hw[1] // stride)
    assert fast.shape == ref.shape == (2, Ho, Wo, m.embed_dims)
    assert torch.allclose(fast, ref, atol=1e-5)
    g = torch.randn_like(fast)
    params = [x] + list(m.parameters())
    for a, b in zip(torch.autograd.grad(fast, params, g), torch.autograd.grad(ref, params, g)):
        # relative to the gradient's scale: the query's sums over every position and window
        # (largest ~26) differ by 2.2e-5 in float32 on an AMD EPYC with torch 2.1.2
        assert torch.allclose(a, b, atol=1e-5 * max(1., float(b.abs().max())))


def test_every_registered_implementation_matches_the_reference():
    """Called directly, so that those the seam takes only under a compiler (the compiled
    core, the lean form recomputing it) are checked in eager too."""
    m = _layer(16, 32, 4, 3, 2)
    x = torch.randn(2, 9, 11, 16, requires_grad=True)
    args = (m.query, m.key_weight, m.to_v.weight, m.rpe_bias, m.attn_scale, m.num_heads,
            m.kernel_size, m.stride)
    with attention_form('reference'):
        ref = qna_attention(x, *args)
    g = torch.randn_like(ref)
    params = [x] + list(m.parameters())
    ref_grads = torch.autograd.grad(ref, params, g, allow_unused=True)
    entries = [e for es in implementations('qna').values() for e in es]
    assert {'qna_attention_lean', 'qna_attention_lean_compiled'} <= {e.name for e in entries}
    for entry in entries:
        out = entry.fn(x, *args)
        assert torch.allclose(out, ref, atol=1e-5), entry.name
        grads = torch.autograd.grad(out, params, g, allow_unused=True)
        for a, b in zip(grads, ref_grads):
            assert (a is None) == (b is None), entry.name
            assert a is None or torch.allclose(a, b, atol=1e-5), entry.name


def test_border_positions_are_left_out_of_the_softmax():
    """At a corner only the in-image positions share the softmax (no zero keys)."""
    m = _layer(4, 4, 1, 3, 1)
    with torch.no_grad():
        m.attn_scale.fill_(1.)
        m.rpe_bias.zero_()
        m.to_out.weight.copy_(torch.eye(4))
    x = torch.randn(1, 5, 5, 4)
    out = m(x)[0, 0, 0]
    q = normalized_queries(m.query, 1)[:, 0]  # (nq, d)
    keys, values = x[0, :2, :2].reshape(4, 4) @ m.key_weight, m.to_v(x[0, :2, :2].reshape(4, 4))
    expected = sum(torch.softmax(keys @ q[i], 0) @ values for i in range(2))
    assert torch.allclose(out, expected, atol=1e-5)


def test_max_subtraction_keeps_large_scores_finite():
    """Scores beyond exp's fp32 range (where the official unshifted exp(s) is inf) still give
    the exact result, computed here by the reference in float64. The shift is a constant per
    image, query and head, so it is exact while the scores of an image span less than ~87."""
    m = _layer(9, 8, 2, 3, 1)
    with torch.no_grad():
        m.query[1] = m.query[0]
        q = normalized_queries(m.query, 2)[0]  # (heads, d): both queries now point the same way
        m.key_weight[8] = 400. * math.sqrt(4) * q.reshape(8) / q.norm(dim=-1).repeat_interleave(4)
    x = torch.cat([torch.randn(1, 6, 6, 8), torch.ones(1, 6, 6, 1)], dim=-1)  # constant channel
    scores = x @ torch.einsum('chd,qhd->cqh', m.key_weight.reshape(9, 2, 4),
                              normalized_queries(m.query, 2)).reshape(9, 4)
    assert scores.min() > 300 and torch.isinf(scores.exp()).all()  # official form: inf / inf
    out = m(x)
    ref = _reference(m.double(), x.double())
    assert torch.isfinite(out).all()
    assert torch.allclose(out.double(), ref, rtol=1e-4, atol=1e-4)
    # a constant added to the relative bias of every offset cancels as well
    with torch.no_grad():
        m.float().rpe_bias.add_(500.)
    assert torch.allclose(m(x), out, atol=1e-5)


def test_fp32_core_under_autocast():
    m = _layer(8, 8, 2, 3, 1)
    x = torch.randn(1, 6, 7, 8)
    ref = m(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = m(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=0.05)


def test_queries_are_unit_norm_per_head_then_scaled():
    q = normalized_queries(torch.randn(2, 12), heads=3)
    assert q.shape == (2, 3, 4)
    assert torch.allclose(q.norm(dim=-1), torch.full((2, 3), 1 / math.sqrt(4)), atol=1e-5)


def test_memory_is_independent_of_the_window():
    """No k*k-sized tensor: the largest intermediate is (B, H, W, nq*F) for every k."""
    sizes = {}
    for k in (3, 11):
        m = _layer(8, 8, 2, k, 1)
        x = torch.randn(1, 20, 20, 8)
        biggest = []

        def pack(t):
            biggest.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                attention_form('fast'):  # the form that keeps the core's tensors
            m(x.requires_grad_())
        sizes[k] = max(biggest)
    assert sizes[3] == sizes[11] == 20 * 20 * 2 * 8


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='odd kernel_size'):
        QnAAttention(8, 8, 2, 4)
    with pytest.raises(ValueError, match='divisible'):
        QnAAttention(8, 10, 3)


def test_unfold_local_attention_baseline_is_a_masked_window_softmax():
    from mmvit_ext.attention.qna import local_attention_unfold
    torch.manual_seed(0)
    x, w = torch.randn(1, 5, 6, 4), torch.randn(12, 4)
    out = local_attention_unfold(x, w, heads=1, kernel_size=3)
    q, k, v = (x @ w.t()).split(4, dim=-1)
    i, j = 0, 3  # a top-border pixel: 2 x 3 neighbours in the image
    nb_k = k[0, 0:2, 2:5].reshape(6, 4)
    nb_v = v[0, 0:2, 2:5].reshape(6, 4)
    expected = torch.softmax(nb_k @ q[0, i, j] / 2, 0) @ nb_v
    assert torch.allclose(out[0, i, j], expected, atol=1e-5)
    # the batched-matmul form of the baseline computes the same thing
    x, w = torch.randn(2, 9, 7, 16), torch.randn(48, 16)
    assert torch.allclose(local_attention_unfold(x, w, 4, 5, products='matmul'),
                          local_attention_unfold(x, w, 4, 5), atol=1e-5)


def test_lean_form_keeps_only_the_input_of_the_core():
    m = _layer(16, 16, 2, 3, 1)
    x = torch.randn(2, 12, 10, 16, requires_grad=True)
    params = list(m.parameters())
    kept = {}
    for form in ('fast', 'lean'):
        with attention_form(form):
            kept[form] = saved_activation_bytes(lambda: m(x), params)
    # the core's input (x) and to_out's input: two (B, H, W, C) maps; fast keeps the
    # exponentials, weighted values and convolution outputs too
    assert kept['lean'] == 2 * x.numel() * 4
    assert kept['fast'] > 3 * kept['lean']
