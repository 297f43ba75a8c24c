"""SG-Former attention: fast forms against the step-by-step references, padding, significance."""
import pytest
import torch
import torch.nn as nn

from mmvit_ext.attention import attention_form
from mmvit_ext.attention.sg import (DEFAULT_MERGE_GROUPS, FullAttention, HybridScaleAttention,
                                    SelfGuidedAttention, merge_bounds, merge_sorted_tokens,
                                    window_attention)
from mmvit_ext.attention.sg.reference import (full_attention_reference,
                                              hybrid_scale_attention_reference,
                                              merge_sorted_tokens_reference,
                                              self_guided_attention_reference,
                                              window_attention_reference)


def _randn(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g)
    return t.requires_grad_() if grad else t


def _seeded(module, seed=0):
    """Random (not default) values everywhere, so biases and merge weights matter."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return module


def _grads(out, inputs):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, inputs, g, allow_unused=True)
    # a merge layer with no token to pool gets no gradient: compare it as zeros
    return [torch.zeros_like(i) if d is None else d for i, d in zip(inputs, grads)]


def _same_grads(out, ref, inputs):
    """Gradients equal up to float32 summation order: 1e-5 of each gradient's largest entry
    (parameter gradients sum over thousands of tokens and reach several hundred)."""
    for a, b in zip(_grads(out, inputs), _grads(ref, inputs)):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max() + 1e-6


@pytest.mark.parametrize('hw', [(14, 14), (7, 21), (10, 9), (3, 16), (1, 1)])
def test_window_attention_matches_loop_reference(hw):
    N = hw[0] * hw[1]
    q, k, v = (_randn(2, 3, N, 8, seed=s) for s in range(3))
    out, sig = window_attention(q, k, v, hw, 7, 0.3)
    ref, ref_sig = window_attention_reference(q, k, v, hw, 7, 0.3)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(sig, ref_sig, atol=1e-6)
    _same_grads(out, ref, (q, k, v))


@pytest.mark.parametrize('hw', [(10, 9), (14, 14)])
def test_window_padding_never_changes_real_tokens(hw):
    """Padded tokens are masked keys and left out of the averages: any amount of padding (even
    whole windows of it) gives the same outputs and significance on the real tokens."""
    N = hw[0] * hw[1]
    q, k, v = (_randn(1, 2, N, 4, seed=s, grad=False) for s in range(3))
    base, base_sig = window_attention(q, k, v, hw, 7, 0.5)
    for extra in [(1, 0), (0, 2), (2, 3)]:
        out, sig = window_attention(q, k, v, hw, 7, 0.5, pad_extra=extra)
        assert torch.allclose(out, base, atol=1e-6) and torch.allclose(sig, base_sig, atol=1e-7)
        assert torch.isfinite(out).all()
    # the received attention of a window sums to the number of its keys' queries' rows: each
    # real query spreads 1 over its window, so the mean over queries sums to 1 per window
    assert torch.allclose(base_sig[:, :7, :7].sum(), torch.tensor(1.), atol=1e-5)


@pytest.mark.parametrize('num_tokens', [3136, 784, 196, 1000, 37, 5, 1])
@pytest.mark.parametrize('stage', [0, 1, 2])
def test_merge_matches_chunk_loop(stage, num_tokens):
    groups = DEFAULT_MERGE_GROUPS[stage]
    merges = nn.ModuleList(_seeded(nn.Linear(k, 1), seed=i) for i, (_, k) in enumerate(groups))
    tokens = _randn(2, num_tokens, 6)
    fast = merge_sorted_tokens(tokens, groups, merges)
    ref = merge_sorted_tokens_reference(tokens, groups, merges)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, atol=1e-5)
    _same_grads(fast, ref, [tokens] + list(merges.parameters()))


def test_merge_bounds_are_the_official_key_counts_at_224():
    """60 / 60 / 147 key tokens per half in stages 1-3 at a 224 input (spec table)."""
    counts = []
    for n, groups in zip((3136, 784, 196), DEFAULT_MERGE_GROUPS):
        counts.append(sum((e - s) // k for s, e, k in merge_bounds(n, groups)))
        assert all((e - s) % k == 0 for s, e, k in merge_bounds(n, groups))
    assert counts == [60, 60, 147]
    assert merge_bounds(3136, DEFAULT_MERGE_GROUPS[0]) == [(0, 784, 196), (784, 2352, 56),
                                                            (2352, 3136, 28)]


@pytest.mark.parametrize('dims,heads,sr,hw', [(32, 2, 8, (56, 56)), (48, 4, 4, (28, 28)),
                                              (32, 2, 2, (14, 14)), (32, 4, 8, (25, 42)),
                                              (16, 2, 4, (9, 13)), (16, 2, 2, (3, 5))])
def test_hybrid_block_matches_reference(dims, heads, sr, hw):
    m = _seeded(HybridScaleAttention(dims, heads, sr))
    x = _randn(2, hw[0] * hw[1], dims)
    out, sig = m(x, hw)
    ref, ref_sig = hybrid_scale_attention_reference(m, x, hw)
    assert sig.shape == (2, *hw) and not sig.requires_grad
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(sig, ref_sig, atol=1e-6)
    params = [x] + list(m.parameters())
    _same_grads(out, ref, params)


def test_significance_mean_is_2_over_49_at_224():
    """Both terms average to 1/49 when nothing is padded (measured on the official code)."""
    m = _seeded(HybridScaleAttention(64, 2, 8))
    _, sig = m(_randn(1, 56 * 56, 64, grad=False), (56, 56))
    assert abs(sig.mean().item() - 2 / 49) < 1e-6
    # the global term is constant on each 8x8 cell (nearest upsampling)
    _, local = window_attention(*(_randn(1, 1, 3136, 32, seed=s, grad=False) for s in range(3)),
                                (56, 56), 7, 1.)
    assert local.shape == (1, 56, 56)


@pytest.mark.parametrize('dims,heads,stage,hw', [(32, 2, 0, (56, 56)), (32, 4, 1, (28, 28)),
                                                 (32, 4, 2, (14, 14)), (16, 2, 0, (25, 42)),
                                                 (16, 2, 1, (9, 13)), (16, 2, 2, (3, 5)),
                                                 (16, 2, 0, (1, 2))])
def test_guided_block_matches_reference(dims, heads, stage, hw):
    m = _seeded(SelfGuidedAttention(dims, heads, DEFAULT_MERGE_GROUPS[stage]))
    x = _randn(2, hw[0] * hw[1], dims)
    sig = _randn(2, *hw, seed=5, grad=False).abs()
    out = m(x, hw, sig)
    ref = self_guided_attention_reference(m, x, hw, sig)
    assert torch.allclose(out, ref, atol=1e-5)
    params = [x] + list(m.parameters())
    _same_grads(out, ref, params)


def test_guided_block_follows_the_significance_order():
    """Reordering which tokens are salient changes the keys; a map with the same order does not."""
    m = _seeded(SelfGuidedAttention(16, 2, DEFAULT_MERGE_GROUPS[1])).eval()
    hw = (28, 28)
    x = _randn(1, 784, 16, grad=False)
    sig = _randn(1, *hw, seed=3, grad=False)
    out = m(x, hw, sig)
    assert torch.allclose(m(x, hw, sig * 3 + 1), out, atol=1e-6)  # monotone: same order
    assert not torch.allclose(m(x, hw, -sig), out, atol=1e-3)
    with pytest.raises(ValueError, match='significance map'):
        m(x, hw, None)


def test_row_and_column_sequences_hold_the_same_tokens_without_ties():
    m = SelfGuidedAttention(8, 2, DEFAULT_MERGE_GROUPS[2])
    x = _randn(1, 6 * 5, 8, grad=False)
    sig = torch.randperm(30).float().reshape(1, 6, 5)  # no ties
    row, col = m.sorted_sequences(x, (6, 5), sig)
    assert torch.equal(row, col)
    assert torch.equal(row[0, 0], x[0, int(sig.argmin())])


@pytest.mark.parametrize('hw', [(7, 7), (5, 11)])
def test_full_attention_matches_reference(hw):
    m = _seeded(FullAttention(32, 4))
    x = _randn(2, hw[0] * hw[1], 32)
    out, ref = m(x, hw), full_attention_reference(m, x, hw)
    assert torch.allclose(out, ref, atol=1e-5)
    _same_grads(out, ref, [x])


def test_kv_split_is_key_first_and_head_major():
    """Pin the fused layout: zeroing the V rows of global_kv zeroes the global half's output."""
    m = _seeded(HybridScaleAttention(16, 2, 2)).eval()
    with torch.no_grad():
        m.global_kv.weight[8:] = 0
        m.global_kv.bias[8:] = 0
        m.lepe_linear.weight.zero_()
        m.lepe_linear.bias.zero_()
        m.lepe_conv.bias.zero_()
        m.proj.weight.copy_(torch.eye(16))
        m.proj.bias.zero_()
    out, _ = m(_randn(1, 16, 16, grad=False), (4, 4))
    assert torch.allclose(out[..., :8], torch.zeros(1, 16, 8), atol=1e-7)  # global heads first
    assert out[..., 8:].abs().sum() > 0


def test_odd_heads_are_refused():
    with pytest.raises(ValueError, match='even'):
        HybridScaleAttention(24, 3, 2)


def test_conv_on_tokens_equals_a_plain_nchw_conv():
    from mmvit_ext.attention.sg import conv_on_tokens
    conv = _seeded(nn.Conv2d(12, 12, 3, padding=1, groups=12))
    strided = _seeded(nn.Conv2d(12, 6, 2, stride=2))
    x = _randn(2, 6 * 10, 12, grad=False)
    grid = x.transpose(1, 2).reshape(2, 12, 6, 10)
    assert torch.allclose(conv_on_tokens(conv, x, (6, 10)),
                          conv(grid).flatten(2).transpose(1, 2), atol=1e-6)
    assert torch.allclose(conv_on_tokens(strided, x, (6, 10)),
                          strided(grid).flatten(2).transpose(1, 2), atol=1e-6)


def test_attention_dropout_hits_the_output_not_the_significance():
    m = _seeded(HybridScaleAttention(16, 2, 2, attn_drop=0.5))
    x = _randn(1, 10 * 9, 16, grad=False)
    m.eval()
    out_eval, sig_eval = m(x, (10, 9))
    m.train()
    torch.manual_seed(0)
    out_train, sig_train = m(x, (10, 9))
    assert torch.allclose(sig_train, sig_eval) and not torch.allclose(out_train, out_eval)


def test_chunked_global_half_matches_reference_across_many_chunks(monkeypatch):
    """Queries in chunks (forced small here); training recomputes each chunk's probabilities in
    backward: outputs, significance and gradients equal the explicit form."""
    from mmvit_ext.attention.sg import global_half
    monkeypatch.setattr(global_half, 'CHUNK_ELEMENTS', 2 * 2 * 7 * 30)  # ~7 queries per chunk
    m = _seeded(HybridScaleAttention(32, 4, 4))
    x = _randn(2, 20 * 26, 32)
    out, sig = m(x, (20, 26))
    ref, ref_sig = hybrid_scale_attention_reference(m, x, (20, 26))
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(sig, ref_sig, atol=1e-6)
    _same_grads(out, ref, [x] + list(m.parameters()))


def test_training_keeps_no_query_by_key_probabilities():
    from mmvit_ext.analysis.benchmark import saved_activation_bytes
    m = _seeded(HybridScaleAttention(16, 2, 2, window_size=7))
    x = _randn(1, 56 * 56, 16)
    saved = saved_activation_bytes(lambda: m(x, (56, 56)), list(m.parameters()))
    probs = 1 * 1 * 3136 * 784 * 4  # (B, heads / 2, N, N / sr^2) in fp32
    assert saved < probs / 2


@pytest.mark.parametrize('training', [False, True])
def test_bf16_autocast_gives_the_fp32_significance_and_sort(training):
    """The significance map (and so the G block's token order) is computed in fp32 from fp32
    queries and keys under autocast: bitwise the fp32 map."""
    h = _seeded(HybridScaleAttention(32, 2, 4)).train(training)
    g = _seeded(SelfGuidedAttention(32, 2, DEFAULT_MERGE_GROUPS[1]), seed=1).train(training)
    x = _randn(2, 28 * 30, 32, grad=training)
    _, sig = h(x, (28, 30))
    with torch.autocast('cpu', torch.bfloat16):
        out, sig_amp = h(x, (28, 30))
        seqs = g.sorted_sequences(x, (28, 30), sig_amp)
    assert out.dtype == torch.bfloat16 and sig_amp.dtype == torch.float32
    assert torch.equal(sig_amp, sig)
    assert torch.equal(seqs, g.sorted_sequences(x, (28, 30), sig))


@pytest.mark.parametrize('hw', [(10, 9), (14, 14)])
def test_every_block_reaches_its_reference_through_attention_form(hw):
    """The one way to the reference forms: ``attention_form('reference')`` around the module
    gives the step-by-step functions' results, for all three blocks; the traceable forms (what
    exporters see) give the fast forms' values."""
    N = hw[0] * hw[1]
    x = _randn(2, N, 16, grad=False)
    hybrid, guided, full = (_seeded(HybridScaleAttention(16, 2, 2)).eval(),
                            _seeded(SelfGuidedAttention(16, 2, DEFAULT_MERGE_GROUPS[1])).eval(),
                            _seeded(FullAttention(16, 2)).eval())
    sig = torch.rand(2, *hw, generator=torch.Generator().manual_seed(3))
    fast = (hybrid(x, hw), guided(x, hw, sig), full(x, hw))
    with attention_form('reference'):
        ref = (hybrid(x, hw), guided(x, hw, sig), full(x, hw))
    expected = (hybrid_scale_attention_reference(hybrid, x, hw),
                self_guided_attention_reference(guided, x, hw, sig),
                full_attention_reference(full, x, hw))
    assert torch.equal(ref[0][0], expected[0][0]) and torch.equal(ref[0][1], expected[0][1])
    assert torch.equal(ref[1], expected[1]) and torch.equal(ref[2], expected[2])
    with attention_form('traceable'):
        traced = (hybrid(x, hw), guided(x, hw, sig), full(x, hw))
    for a, b in ((fast[0][0], traced[0][0]), (fast[0][1], traced[0][1]), (fast[1], traced[1]),
                 (fast[2], traced[2]), (fast[0][0], ref[0][0]), (fast[1], ref[1])):
        assert torch.allclose(a, b, atol=1e-5)
