"""DG-Attention: fast grouped form vs dense masked reference, routing, limits, memory, FLOPs."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmvit_ext.analysis import count_flops
from mmvit_ext.analysis.benchmark import saved_activation_bytes
from mmvit_ext.attention import attention_form
from mmvit_ext.attention.dg import (DGRouting, DynamicGroupAttention, grouped_attention,
                                    kmeans_groups, route, select_group_keys)
from mmvit_ext.attention.dg.reference import dg_attention_reference


def _reference(m, x):
    with attention_form('reference'):
        return m(x)


def _assert_equals_reference(m, x, out):
    """``out = m(x)`` in some form equals the reference form, values and gradients."""
    ref = _reference(m, x)
    assert torch.allclose(out, ref, atol=1e-10)
    g = torch.randn_like(out)
    params = [x] + list(m.parameters())
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize('lean', [False, True])  # True: the GPU default, recompute in backward
@pytest.mark.parametrize('n,groups,topk,chunk', [
    (50, 4, 10, 8), (200, 5, 37, 16), (333, 16, 20, 64), (64, 3, 64, 8),  # k = N: all keys
    (7, 8, 10, 4),  # fewer tokens than groups and than k
    (1, 3, 3, 64),  # a single token
])
def test_fast_equals_dense_masked_reference(n, groups, topk, chunk, lean):
    torch.manual_seed(n)
    m = DynamicGroupAttention(32, 4, groups, topk, chunk_size=chunk).double()
    x = torch.randn(2, n, 32, dtype=torch.float64, requires_grad=True)
    with attention_form('lean' if lean else 'fast'):
        out = m(x)
    _assert_equals_reference(m, x, out)


def test_one_group_with_all_keys_is_multi_head_attention():
    torch.manual_seed(0)
    m = DynamicGroupAttention(32, 4, num_groups=1, topk=None).eval()
    x = torch.randn(2, 45, 32)
    q, k, v = m.qkv(x).reshape(2, 45, 3, 4, 8).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
    expected = m.proj((attn @ v).transpose(1, 2).reshape(2, 45, 32))
    assert torch.allclose(m(x), expected, atol=1e-5)
    m.topk = 45  # a k of all tokens is the same thing
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_extremely_unbalanced_groups():
    """All queries equal except one: one group holds N - 1 queries, the chunk bound holds."""
    torch.manual_seed(0)
    q = torch.randn(1, 1, 8).expand(2, 130, 8).clone().double()
    q[:, 7] = -q[:, 7]
    k, v = torch.randn(2, 130, 8).double(), torch.randn(2, 130, 8).double()
    assign = kmeans_groups(q, 6, 3)
    assert (assign == assign[:, :1]).sum(1).tolist() == [129, 129]
    keys = select_group_keys(q, k, assign, 6, 16)
    fast = grouped_attention(q, k, v, DGRouting(assign, keys), 0.3, chunk_size=16)
    assert torch.allclose(fast, dg_attention_reference(q, k, v, DGRouting(assign, keys), 0.3))


def test_kmeans_finds_separated_clusters_deterministically_without_grad():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(3, 16), dim=-1) * 4
    labels = torch.arange(90) % 3
    q = (centres[labels] + 0.1 * torch.randn(90, 16))[None].requires_grad_()
    assign = kmeans_groups(q, 3, iters=5)
    assert not assign.requires_grad and assign.dtype == torch.long
    # same partition as the truth (up to renaming the groups)
    pairs = {(int(a), int(b)) for a, b in zip(assign[0], labels)}
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3
    assert torch.equal(assign, kmeans_groups(q, 3, iters=5))  # repeatable


def test_group_keys_are_the_top_k_of_the_mean_query():
    torch.manual_seed(0)
    q, k = torch.randn(2, 40, 8), torch.randn(2, 40, 8)
    assign = kmeans_groups(q, 4, 2)
    keys = select_group_keys(q, k, assign, 4, 5)
    for b in range(2):
        for g in range(4):
            members = q[b, assign[b] == g]
            if len(members):
                expected = (members.mean(0) @ k[b].T).topk(5).indices
                assert set(keys[b, g].tolist()) == set(expected.tolist())


def test_a_query_ignores_keys_outside_its_group_selection():
    torch.manual_seed(0)
    m = DynamicGroupAttention(16, 1, num_groups=3, topk=4).eval()
    x = torch.randn(1, 30, 16)
    with torch.no_grad():
        q, k, v = m._qkv(x)
        routing = m.routing(x, q, k)
        out = grouped_attention(q, k, v, routing, m.scale)
        g0 = routing.assign[0, 0]
        unseen = [j for j in range(30) if j not in routing.key_index[0, g0].tolist()]
        v2 = v.clone()
        v2[0, unseen] += 100.
        out2 = grouped_attention(q, k, v2, routing, m.scale)
    members = routing.assign[0] == g0
    assert torch.allclose(out[0, members], out2[0, members])
    assert not torch.allclose(out, out2)


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out, )):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_n_by_n_tensor_and_memory_linear_in_tokens():
    """The largest tensor of forward + backward grows like N (at fixed groups and k), and stays
    far below N^2; the dense reference builds N x N."""
    m = DynamicGroupAttention(16, 2, num_groups=4, topk=32)
    sizes = {}
    for n in (1024, 4096):
        x = torch.randn(1, n, 16, requires_grad=True)
        with _LargestTensor() as mode:
            m(x).sum().backward()
        sizes[n] = mode.largest
        assert sizes[n] < n * n / 8
    assert sizes[4096] <= 4.5 * sizes[1024]
    with _LargestTensor() as mode:
        _reference(m, torch.randn(1, 1024, 16))
    assert mode.largest >= 2 * 1024 * 1024


def test_flops_count_the_selected_keys_exactly():
    class Wrap(torch.nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.attn = DynamicGroupAttention(64, 2, **kw)

        def forward(self, x):
            return self.attn(x)

    n = 3136
    linears = n * 64 * 3 * 64 + n * 64 * 64
    r = count_flops(Wrap(num_groups=1, topk=None), inputs=(torch.randn(1, n, 64), ))
    assert r['flops'] == linears + 2 * n * n * 64  # global: q k^T and attn v
    r = count_flops(Wrap(num_groups=8, topk=64, kmeans_iters=3), inputs=(torch.randn(1, n, 64), ))
    core = 2 * n * 64 * 64  # every query: 64 keys, both products, all heads
    # k-means: 1 + 3 assignments and 3 mean updates (one-hot matmuls); key selection: the group
    # means and the centroid-key scores; each n * groups * d
    kmeans = (4 + 3 + 2) * n * 8 * 64
    assert r['attention_flops'] == core + kmeans and r['flops'] == linears + core + kmeans


def test_routing_is_kept_for_visualisation_and_bad_settings_are_refused():
    m = DynamicGroupAttention(16, 2, 3, 5, keep_routing=True)
    m(torch.randn(2, 20, 16))
    assert m.last_routing.assign.shape == (2, 20) and m.last_routing.key_index.shape == (2, 3, 5)
    with pytest.raises(ValueError, match='divisible'):
        DynamicGroupAttention(10, 3)
    with pytest.raises(ValueError, match='>= 1'):
        DynamicGroupAttention(16, 2, num_groups=0)


@pytest.mark.parametrize('n,groups,topk,chunk',
                         [(200, 5, 37, 16), (7, 8, 10, 4), (333, 16, 20, 64)])
def test_symbolic_size_layout_equals_the_reference(n, groups, topk, chunk, monkeypatch):
    """The layout taken under torch.export / dynamic torch.compile (index grids, no reshape of
    the token axis), forced here at concrete sizes: same values and gradients."""
    from mmvit_ext.attention.dg import grouped
    monkeypatch.setattr(grouped, '_is_symbolic', lambda size: True)
    test_fast_equals_dense_masked_reference(n, groups, topk, chunk, lean=False)


@pytest.mark.parametrize('n,groups,topk,chunk', [(200, 5, 37, 16), (64, 3, 64, 8), (7, 8, 10, 4)])
def test_explicit_softmax_form_for_old_compilers_equals_the_reference(n, groups, topk, chunk,
                                                                      monkeypatch):
    """torch < 2.5 under torch.compile: the products and softmax spelt out (torch 2.1's
    inductor failed after the fused call), forced here in eager: same values and gradients."""
    from mmvit_ext.attention import forms
    from mmvit_ext.attention.dg import grouped
    monkeypatch.setattr(forms, '_OLD_DYNAMO', True)
    monkeypatch.setattr(forms, 'compiling', lambda: True)
    calls = []
    explicit = grouped._explicit_attention
    monkeypatch.setattr(grouped, '_explicit_attention',
                        lambda *a, **kw: calls.append(1) or explicit(*a, **kw))
    torch.manual_seed(n)
    m = DynamicGroupAttention(32, 4, groups, topk, chunk_size=chunk).double()
    x = torch.randn(2, n, 32, dtype=torch.float64, requires_grad=True)
    with attention_form('compiled'):
        out = m(x)
    assert calls == [1]
    _assert_equals_reference(m, x, out)


def test_exported_with_a_free_token_count_matches_eager():
    """torch.export with a symbolic token count takes the index-grid layout; one program is
    exact at token counts it was not exported at."""
    torch.manual_seed(0)
    m = DynamicGroupAttention(32, 4, num_groups=4, topk=24).eval()
    n = torch.export.Dim('n', min=32, max=4096)
    program = torch.export.export(m, (torch.randn(1, 300, 32), ), dynamic_shapes=({1: n}, ),
                                  strict=False).module()
    for tokens in (300, 77, 1000):
        x = torch.randn(1, tokens, 32)
        with torch.no_grad():
            assert torch.allclose(program(x), _reference(m, x), atol=1e-5), tokens


def test_group_sums_in_token_blocks_equal_one_product():
    from mmvit_ext.attention.dg.routing import _group_sums
    torch.manual_seed(0)
    x = torch.randn(3, 2500, 8, dtype=torch.float64)
    assign = torch.randint(0, 5, (3, 2500))
    sums, counts = _group_sums(x, assign, 5, block=1024)  # 2 whole blocks + a remainder
    onehot = F.one_hot(assign, 5).double()
    assert torch.allclose(sums, onehot.transpose(1, 2) @ x, atol=1e-10)
    assert torch.equal(counts, onehot.sum(1))


def test_automatic_chunk_length_changes_layout_not_result():
    from mmvit_ext.attention.dg import auto_chunk_size
    assert auto_chunk_size(67200, 16) == 256 and auto_chunk_size(16800, 8) == 128
    assert auto_chunk_size(1050, 4) == 64 and auto_chunk_size(50, 8) == 64
    # the nearest power of two on a log scale: sqrt(8 N / G) = 2^6.5 and 2^7.5 at N = 1024 G
    # and 4096 G, compared as whole numbers (a traced size: no float of it, no log)
    assert [auto_chunk_size(n, 4) for n in (4096, 4097, 16383, 16384)] == [64, 128, 128, 256]
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3000, 8, dtype=torch.float64) for _ in range(3))
    routing = DGRouting(kmeans_groups(q, 4, 2), None)
    routing = DGRouting(routing.assign, select_group_keys(q, k, routing.assign, 4, 40))
    ref = dg_attention_reference(q, k, v, routing, 0.3)
    for chunk in (None, 16, 100):
        assert torch.allclose(grouped_attention(q, k, v, routing, 0.3, chunk), ref, atol=1e-10)


@pytest.mark.parametrize('training', [False, True])
def test_bf16_autocast_routes_exactly_as_fp32(training):
    """Routing is decided in fp32 from fp32 queries and keys, so AMP picks the same groups and
    keys as fp32 on the same input; only the attention itself runs in bf16."""
    torch.manual_seed(0)
    m = DynamicGroupAttention(64, 2, 8, 32, keep_routing=True).train(training)
    x = torch.randn(2, 700, 64, requires_grad=training)
    ref = m(x)
    fp32 = m.last_routing
    with torch.autocast('cpu', torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16
    assert torch.equal(m.last_routing.assign, fp32.assign)
    assert torch.equal(m.last_routing.key_index, fp32.key_index)
    assert ((out.float() - ref).abs().max() / ref.abs().max()) < 0.02
    # routing the bf16 projections instead would move a few percent of the queries
    with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):
        q, k, _ = m._qkv(x)
    assert (route(q, k, m.num_groups, m.topk, m.kmeans_iters).assign[:2] != fp32.assign).any()


def test_memory_lean_training_keeps_no_gathered_keys():
    """With recomputation (the accelerator default) backward keeps q, k, v, not the chunks'
    gathered copies of K and V."""
    torch.manual_seed(0)
    m = DynamicGroupAttention(32, 2, 4, 256)  # chunks of 64: 8 gathered K/V rows per query
    x = torch.randn(1, 2048, 32, requires_grad=True)
    params = list(m.parameters())
    with attention_form('fast'):
        kept = saved_activation_bytes(lambda: m(x), params)
    with attention_form('lean'):
        lean = saved_activation_bytes(lambda: m(x), params)
    assert lean < kept / 2


def test_one_hot_by_comparison_equals_torchs():
    from mmvit_ext.attention.shapes import one_hot
    index = torch.randint(0, 7, (3, 11))
    assert torch.equal(one_hot(index, 7), F.one_hot(index, 7))
    assert one_hot(index, 7).dtype == F.one_hot(index, 7).dtype
