"""SG-Former attention (ICCV 2023, arXiv 2308.12216): hybrid-scale (H), self-guided (G), full (F).

Every block of stages 1-3 alternates H and G. The H block returns a *significance map* S (how much
attention each token receives, from its global and its local heads); the next G block sorts the
tokens by S and merges them into fewer key/value tokens, finer where S is high. All three add a
LePE-style term ``dwconv3x3(linear(x))`` before the output projection.

Tokens are ``(B, N, C)`` in row-major order over ``hw = (H, W)``; any H, W works:

* the local 7x7 windows pad the map to a multiple of 7; padded tokens are masked out as keys and
  left out of the significance averages, so valid outputs do not depend on the padding
  (``pad_extra`` adds more padding to check this);
* the stride-``sr`` reduction zero-fills the last row/column of cells when H or W is not a
  multiple of ``sr``, like any strided conv at a border (no cell is made only of padding);
* the G block sorts and merges only real tokens; a merge group whose size is not a multiple of its
  chunk length completes its last chunk with zero tokens (they add nothing to the weighted sum).

At sizes the official model accepts (224*k inputs) nothing is padded and the result equals it.

The H block's global half attends from all N tokens to the ``N / sr^2`` reduced ones and must
also return how much attention every key receives. :func:`global_attention_with_significance`
runs it over chunks of queries and, in training, recomputes each chunk's probabilities in
backward instead of keeping the ``(B, h, N, N / sr^2)`` tensor (564 MB per image pair at
stage 1 of an 800x1344 input). Significance is a routing decision: it is always computed in fp32
from fp32 queries and keys (recomputed without gradient under autocast), so that AMP and fp32
sort the same tokens.

Each fast form has a slow reference here (loops over windows and chunks, explicit softmax) that
follows the official computation step by step; the tests check them against each other.
"""
from fractions import Fraction
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import (accumulation_dtype, ceil_div, crop_to, onnx_export_running,
                   plain_path_required, window_key_mask)

__all__ = [
    'HybridScaleAttention', 'SelfGuidedAttention', 'FullAttention', 'window_attention',
    'window_attention_reference', 'merge_sorted_tokens', 'merge_sorted_tokens_reference',
    'merge_bounds', 'conv_on_tokens', 'hybrid_scale_attention_reference', 'self_guided_attention_reference',
    'full_attention_reference', 'DEFAULT_MERGE_GROUPS', 'global_attention_with_significance',
    'window_significance'
]

# Merge groups of the G block per stage, from the official code: (end of the group as a fraction
# of the ascending significance order, chunk length k). Stage 1: the least salient quarter is
# pooled 196 -> 1, the middle half 56 -> 1, the top quarter 28 -> 1.
DEFAULT_MERGE_GROUPS = (
    ((0.25, 196), (0.75, 56), (1.0, 28)),
    ((0.25, 49), (0.75, 14), (1.0, 7)),
    ((0.5, 2), (1.0, 1)),
)


def _heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, N, h*d)`` -> ``(B, h, N, d)`` (channels head-major, as in the official layout)."""
    B, N, C = t.shape
    return t.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)


def _split_kv(kv: torch.Tensor, num_heads: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fused ``K|V`` projection output -> K, V as ``(B, h, N, d)``. K comes first."""
    k, v = kv.chunk(2, dim=-1)
    return _heads(k, num_heads), _heads(v, num_heads)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    B, h, N, d = t.shape
    return t.transpose(1, 2).reshape(B, N, h * d)


def conv_on_tokens(conv: nn.Module, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """Apply a conv to ``(B, N, C)`` row-major tokens and return tokens.

    The tokens are viewed as a channels-last NCHW tensor (no copy), which the CPU/GPU conv kernels
    take natively: for depthwise convs about 5x faster than transposing to contiguous NCHW.
    """
    B, N, C = x.shape
    y = conv(x.reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).reshape(B, -1, y.shape[1])


# --------------------------------------------------------------------------- local windows
def _window_logits(q, k, hw, window, scale, pad_extra):
    """Masked logits ``(B, h, nW, L, L)`` of the ``window x window`` windows, the validity mask
    ``(nW, L)`` (None when nothing is padded), the padded geometry, and the windows function."""
    B, h, N, d = q.shape
    H, W = hw
    ws = window
    Hp = ceil_div(H, ws) * ws + pad_extra[0] * ws
    Wp = ceil_div(W, ws) * ws + pad_extra[1] * ws
    nh, nw = Hp // ws, Wp // ws
    L = ws * ws

    def windows(t):  # (B, h, N, d) -> (B, h, nW, L, d), row-major windows
        t = t.reshape(B * h, H, W, t.shape[-1])
        if plain_path_required() or (Hp, Wp) != (H, W):
            t = F.pad(t, (0, 0, 0, Wp - W, 0, Hp - H))
        t = t.reshape(B * h, nh, ws, nw, ws, -1).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(B, h, nh * nw, L, -1)

    logits = (windows(q) * scale) @ windows(k).transpose(-2, -1)  # (B, h, nW, L, L)
    valid = None
    if plain_path_required() or (Hp, Wp) != (H, W):
        valid = window_key_mask(H, W, Hp, Wp, ws, ws, q.device)  # (nW, L)
        # finite fill: a window of padding only gets a uniform softmax, never NaN
        logits = logits.masked_fill(~valid[:, None, :], torch.finfo(logits.dtype).min)
    return logits, valid, (Hp, Wp, nh, nw, ws), windows


@torch.no_grad()
def _received_by_window_keys(attn, valid, geometry, hw):
    """Per key, the attention it gets averaged over heads and the real queries of its window."""
    B = attn.shape[0]
    Hp, Wp, nh, nw, ws = geometry
    a = attn.detach().mean(dim=1)  # (B, nW, Lq, Lk): mean over heads
    if valid is None:
        received = a.mean(dim=2)
    else:
        qmask = valid.to(a.dtype)  # (nW, L)
        received = (a * qmask[None, :, :, None]).sum(2)
        received = received / qmask.sum(1).clamp(min=1)[None, :, None]
    received = received.reshape(B, nh, nw, ws, ws).permute(0, 1, 3, 2, 4)
    return crop_to(received.reshape(B, Hp, Wp), hw[0], hw[1], dim=1)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: Tuple[int, int],
                     window: int, scale: float,
                     pad_extra: Tuple[int, int] = (0, 0),
                     attn_drop: Optional[nn.Module] = None,
                     with_significance: bool = True
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Non-overlapping ``window x window`` attention with the attention each key receives.

    Args:
        q, k, v: ``(B, h, N, d)`` with ``N = H * W``.
        pad_extra: extra windows of padding (rows, cols) beyond what H, W need; for tests.
        attn_drop: dropout on the probabilities of the output (the returned map is taken before).
        with_significance: False returns None for the map (it is computed elsewhere).
    Returns:
        out ``(B, h, N, d)``; received ``(B, H, W)``: per key, the attention it gets averaged over
        heads and over the real queries of its window (0 for nothing), detached.
    """
    B, h, N, d = q.shape
    H, W = hw
    logits, valid, geometry, windows = _window_logits(q, k, hw, window, scale, pad_extra)
    Hp, Wp, nh, nw, ws = geometry
    attn = logits.softmax(dim=-1)
    out = (attn if attn_drop is None else attn_drop(attn)) @ windows(v)  # (B, h, nW, L, d)
    out = out.reshape(B * h, nh, nw, ws, ws, d).permute(0, 1, 3, 2, 4, 5)
    out = crop_to(out.reshape(B, h, Hp, Wp, d), H, W, dim=2).reshape(B, h, N, d)
    received = _received_by_window_keys(attn, valid, geometry, hw) if with_significance else None
    return out, received


@torch.no_grad()
def window_significance(q: torch.Tensor, k: torch.Tensor, hw: Tuple[int, int], window: int,
                        scale: float, pad_extra: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The ``received`` map of :func:`window_attention` alone (same ops, so the same numbers),
    autocast off: in the precision of ``q`` and ``k``."""
    with torch.autocast(device_type=q.device.type, enabled=False):
        logits, valid, geometry, _ = _window_logits(q, k, hw, window, scale, pad_extra)
        return _received_by_window_keys(logits.softmax(dim=-1), valid, geometry, hw)


def window_attention_reference(q, k, v, hw, window, scale):
    """Slow form of :func:`window_attention`: a loop over windows; border windows are simply
    smaller (no padding at all)."""
    B, h, N, d = q.shape
    H, W = hw
    grid = lambda t: t.reshape(B, h, H, W, d)  # noqa: E731
    q, k, v = grid(q), grid(k), grid(v)
    out = torch.zeros_like(q)
    received = q.new_zeros(B, H, W)
    for y in range(0, H, window):
        for x in range(0, W, window):
            qs = q[:, :, y:y + window, x:x + window].reshape(B, h, -1, d)
            ks = k[:, :, y:y + window, x:x + window].reshape(B, h, -1, d)
            vs = v[:, :, y:y + window, x:x + window].reshape(B, h, -1, d)
            attn = torch.softmax(scale * qs @ ks.transpose(-2, -1), dim=-1)
            wh, ww = min(window, H - y), min(window, W - x)
            out[:, :, y:y + wh, x:x + ww] = (attn @ vs).reshape(B, h, wh, ww, d)
            received[:, y:y + wh, x:x + ww] = attn.detach().mean(1).mean(1).reshape(B, wh, ww)
    return out.reshape(B, h, N, d), received


# --------------------------------------------------------------------------- global half
# elements of one chunk's (B, h, chunk, M) probabilities: 64 MB in fp32
CHUNK_ELEMENTS = 1 << 24


def _query_chunks(q: torch.Tensor, num_keys: int):
    """Query ranges whose ``(B, h, chunk, M)`` probabilities hold at most ``CHUNK_ELEMENTS``."""
    B, h, N, _ = q.shape
    step = max(1, CHUNK_ELEMENTS // max(B * h * num_keys, 1))
    return [(s, min(s + step, N)) for s in range(0, N, step)]


def _chunk_probs(q_chunk, k, scale):
    """Softmax probabilities of a query chunk, in fp32 for half inputs (as autocast's softmax)."""
    logits = (q_chunk * scale) @ k.transpose(-2, -1)
    return logits.softmax(dim=-1, dtype=accumulation_dtype(logits.dtype))


def _chunked_attention(q, k, v, scale, chunks, received=None):
    """``softmax(q k^T) v`` chunk by chunk; adds each key's received probability (summed over
    heads and queries) to ``received`` if given. The one loop every path runs, so the map is the
    same number whichever path computed it."""
    out = q.new_empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype)
    for s, e in chunks:
        p = _chunk_probs(q[:, :, s:e], k, scale)
        if received is not None:
            received += p.sum(dim=(1, 2), dtype=received.dtype)
        out[:, :, s:e] = p.to(v.dtype) @ v
    return out


def _received_buffer(q, k):
    return torch.zeros(q.shape[0], k.shape[2], dtype=accumulation_dtype(q.dtype),
                       device=q.device)


class _GlobalAttentionFunction(torch.autograd.Function):
    """:func:`_chunked_attention` whose backward recomputes each chunk's probabilities instead
    of keeping them. Returns the output and the (non-differentiable) received sums."""

    @staticmethod
    def forward(ctx, q, k, v, scale, chunks, with_received):
        received = _received_buffer(q, k) if with_received else q.new_zeros(0)
        out = _chunked_attention(q, k, v, scale, chunks, received if with_received else None)
        ctx.save_for_backward(q, k, v)
        ctx.scale, ctx.chunks = scale, chunks
        ctx.mark_non_differentiable(received)
        return out, received

    @staticmethod
    def backward(ctx, grad_out, _):
        q, k, v = ctx.saved_tensors
        acc = accumulation_dtype(k.dtype)
        with torch.autocast(device_type=q.device.type, enabled=False):
            grad_q = torch.empty_like(q)
            grad_k = torch.zeros(k.shape, dtype=acc, device=k.device)
            grad_v = torch.zeros(v.shape, dtype=acc, device=v.device)
            for s, e in ctx.chunks:
                qc, go = q[:, :, s:e], grad_out[:, :, s:e].to(v.dtype)
                p = _chunk_probs(qc, k, ctx.scale)  # (B, h, c, M), fp32 for half inputs
                grad_v += (p.transpose(-2, -1).to(go.dtype) @ go).to(acc)
                dp = (go @ v.transpose(-2, -1)).to(p.dtype)
                ds = p * (dp - (dp * p).sum(-1, keepdim=True))
                del p, dp
                ds = ds.to(q.dtype) * ctx.scale
                grad_q[:, :, s:e] = ds @ k
                grad_k += (ds.transpose(-2, -1) @ qc).to(acc)
        return grad_q, grad_k.to(k.dtype), grad_v.to(v.dtype), None, None, None


def global_attention_with_significance(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                       scale: float, significance_qk=None,
                                       attn_drop: Optional[nn.Module] = None
                                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T * scale) v`` and the mean probability each key receives ``(B, M)``.

    ``q``: ``(B, h, N, d)``, ``k``, ``v``: ``(B, h, M, d)``. The map is read off the same
    probabilities as the output, unless ``significance_qk`` (fp32 ``(q, k)``, given under
    autocast) says where to take it from. With attention dropout in training the probabilities
    are formed explicitly (dropout must hit the output, not the map).
    """
    B, h, N, _ = q.shape
    own = significance_qk is None
    if plain_path_required() and own:  # exporters: one product, no chunk loop on sizes
        probs = _chunk_probs(q, k, scale)
        received = probs.sum(dim=(1, 2), dtype=accumulation_dtype(q.dtype))
        return probs.to(v.dtype) @ v, received / (h * N)
    chunks = _query_chunks(q, k.shape[2])
    received = _received_buffer(q, k)
    if attn_drop is not None and attn_drop.training and attn_drop.p > 0:
        probs = _chunk_probs(q, k, scale)
        out = attn_drop(probs.to(v.dtype)) @ v
        if own:  # the same sums over the same chunks as everywhere else
            for s, e in chunks:
                received += probs[:, :, s:e].sum(dim=(1, 2), dtype=received.dtype)
    elif torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        out, sums = _GlobalAttentionFunction.apply(q, k, v, scale, chunks, own)
        if own:
            received = sums
    else:
        out = _chunked_attention(q, k, v, scale, chunks, received if own else None)
    if not own:
        with torch.no_grad(), torch.autocast(device_type=q.device.type, enabled=False):
            sq, sk = significance_qk
            _chunked_attention(sq, sk, sk[..., :0], scale, _query_chunks(sq, sk.shape[2]),
                               received)
    return out, received / (h * N)


# --------------------------------------------------------------------------- token merging
def merge_bounds(num_tokens: int, groups: Sequence[Tuple[float, int]]) -> List[Tuple[int, int, int]]:
    """``(start, end, chunk)`` of each merge group for ``num_tokens`` sorted tokens.

    ``floor(N * fraction)`` in integers (the fraction as a ratio), which traced sizes keep."""
    bounds, start = [], 0
    for end_frac, chunk in groups:
        if end_frac >= 1:
            end = num_tokens
        else:
            ratio = Fraction(end_frac).limit_denominator(1000)
            end = num_tokens * ratio.numerator // ratio.denominator
        bounds.append((start, end, int(chunk)))
        start = end
    return bounds


def num_merged_tokens(num_tokens: int, groups: Sequence[Tuple[float, int]]) -> int:
    return sum(ceil_div(e - s, k) for s, e, k in merge_bounds(num_tokens, groups))


def merge_sorted_tokens(tokens: torch.Tensor, groups: Sequence[Tuple[float, int]],
                        merges: Sequence[nn.Linear]) -> torch.Tensor:
    """Pool sorted ``(B, N, C)`` tokens group by group, ``k`` consecutive tokens -> one.

    Each chunk becomes ``sum_i w_i x_i + b`` with the scalar weights of ``Linear(k, 1)`` shared by
    all channels. One batched op per group (there are 2-3 groups, never a loop over chunks).
    """
    B, N, C = tokens.shape
    outs = []
    export = plain_path_required()  # no size tests: they would be frozen into the graph
    for (start, end, k), merge in zip(merge_bounds(N, groups), merges):
        n = end - start
        if not export and n == 0:
            continue
        m = ceil_div(n, k)
        seg = tokens[:, start:end]
        if export or m * k != n:  # complete the last chunk with zero tokens
            seg = F.pad(seg, (0, 0, 0, m * k - n))
        # (B, m, C, k) @ Linear(k, 1): the same op as the official pooling
        pooled = merge(seg.reshape(B, m, k, C).transpose(2, 3))
        outs.append(pooled.squeeze(-1))
    return torch.cat(outs, dim=1)


def merge_sorted_tokens_reference(tokens, groups, merges):
    """Slow form of :func:`merge_sorted_tokens`: a loop over chunks, partial chunks summed over
    the tokens they have."""
    B, N, C = tokens.shape
    outs = []
    for (start, end, k), merge in zip(merge_bounds(N, groups), merges):
        w, b = merge.weight[0], merge.bias[0]
        for s in range(start, end, k):
            chunk = tokens[:, s:min(s + k, end)]  # (B, <=k, C)
            outs.append((chunk * w[:chunk.shape[1], None]).sum(1) + b)
    return torch.stack(outs, dim=1)


# --------------------------------------------------------------------------- modules
class _LePEMixin:
    """``dwconv3x3(linear(x))`` on the token grid, added before ``proj``."""

    def _init_lepe(self, dims):
        self.lepe_linear = nn.Linear(dims, dims)
        self.lepe_conv = nn.Conv2d(dims, dims, 3, padding=1, groups=dims)

    def lepe(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        return conv_on_tokens(self.lepe_conv, self.lepe_linear(x), hw)


def _check_dims(embed_dims, num_heads, even_heads):
    if embed_dims % num_heads:
        raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
    if even_heads and num_heads % 2:
        raise ValueError(f'SG-Former splits the heads of stages 1-3 in two halves; num_heads '
                         f'must be even, got {num_heads}')


class HybridScaleAttention(_LePEMixin, nn.Module):
    """H block: half the heads attend globally to a stride-``sr`` reduced map, the other half
    within 7x7 windows. Returns the output and the significance map ``S`` (B, H, W), detached.

    ``S = nearest_up(mean_{heads,queries} A_global) + mean_{heads,window queries} A_local``, taken
    from the same attention probabilities that produce the output (no second pass).
    """

    def __init__(self, embed_dims: int, num_heads: int, sr_ratio: int, window_size: int = 7,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        _check_dims(embed_dims, num_heads, even_heads=True)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.sr_ratio, self.window_size = sr_ratio, window_size
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        half = embed_dims // 2
        self.global_q = nn.Linear(embed_dims, half, bias=qkv_bias)
        self.global_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.local_q = nn.Linear(embed_dims, half, bias=qkv_bias)
        self.local_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.sr = nn.Conv2d(embed_dims, embed_dims, sr_ratio, sr_ratio)
        self.sr_norm = nn.LayerNorm(embed_dims)
        self.act = nn.GELU()
        self.attn_drop = nn.Dropout(attn_drop)
        self._init_lepe(embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def reduce(self, x: torch.Tensor, hw: Tuple[int, int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Stride-``sr`` tokens ``GELU(LN(conv_sr(x)))``; a border cell is zero-filled."""
        B, N, C = x.shape
        H, W = hw
        r = self.sr_ratio
        Hs, Ws = ceil_div(H, r), ceil_div(W, r)
        if plain_path_required() or (Hs * r, Ws * r) != (H, W):
            t = F.pad(x.reshape(B, H, W, C), (0, 0, 0, Ws * r - W, 0, Hs * r - H))
            x, hw = t.reshape(B, -1, C), (Hs * r, Ws * r)
        t = conv_on_tokens(self.sr, x, hw)
        return self.act(self.sr_norm(t)), (Hs, Ws)

    def _fp32_routing_inputs(self, x, hw):
        """fp32 queries/keys of both halves, without gradient: the significance inputs under
        autocast (the same projections the fp32 forward computes)."""
        hh = self.num_heads // 2
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            reduced, _ = self.reduce(x, hw)
            q1 = _heads(self.global_q(x), hh)
            k1, _ = _split_kv(self.global_kv(reduced), hh)
            q2 = _heads(self.local_q(x), hh)
            k2, _ = _split_kv(self.local_kv(x), hh)
        return q1, k1, q2, k2

    def forward(self, x: torch.Tensor, hw: Tuple[int, int],
                pad_extra: Tuple[int, int] = (0, 0)) -> Tuple[torch.Tensor, torch.Tensor]:
        B, N, C = x.shape
        H, W = hw
        hh = self.num_heads // 2
        # global half: queries at full resolution, keys/values on the reduced map
        reduced, (Hs, Ws) = self.reduce(x, hw)
        q1 = _heads(self.global_q(x), hh)
        k1, v1 = _split_kv(self.global_kv(reduced), hh)
        # local half: 7x7 windows at full resolution
        q2 = _heads(self.local_q(x), hh)
        k2, v2 = _split_kv(self.local_kv(x), hh)
        routing = None
        if q1.dtype != x.dtype:  # autocast lowered the projections: decide in fp32
            routing = self._fp32_routing_inputs(x, hw)
        o1, g = global_attention_with_significance(
            q1, k1, v1, self.scale, None if routing is None else routing[:2], self.attn_drop)
        o2, local_sig = window_attention(q2, k2, v2, hw, self.window_size, self.scale, pad_extra,
                                         self.attn_drop, with_significance=routing is None)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            if routing is not None:
                local_sig = window_significance(routing[2], routing[3], hw, self.window_size,
                                                self.scale, pad_extra)
            g = g.reshape(B, Hs, 1, Ws, 1).expand(B, Hs, self.sr_ratio, Ws, self.sr_ratio)
            g = g.reshape(B, Hs * self.sr_ratio, Ws * self.sr_ratio)  # nearest upsampling
            significance = crop_to(g, H, W, dim=1) + local_sig
        out = torch.cat([_merge_heads(o1), _merge_heads(o2)], dim=-1) + self.lepe(x, hw)
        return self.proj_drop(self.proj(out)), significance


class SelfGuidedAttention(_LePEMixin, nn.Module):
    """G block: every query attends to tokens merged along the significance order.

    The tokens are sorted by ``S`` (ascending) twice, in row-major and in column-major order (they
    differ only at ties, as in the official code), pooled by the same merge layers, and give the
    keys/values of the first (``row_kv``) and the second (``col_kv``) half of the heads.
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 merge_groups: Sequence[Tuple[float, int]],
                 qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        _check_dims(embed_dims, num_heads, even_heads=True)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.merge_groups = tuple((float(f), int(k)) for f, k in merge_groups)
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.row_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.col_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.merges = nn.ModuleList(nn.Linear(k, 1) for _, k in self.merge_groups)
        self.attn_drop = attn_drop
        self._init_lepe(embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def sorted_sequences(self, x: torch.Tensor, hw: Tuple[int, int],
                         significance: torch.Tensor) -> torch.Tensor:
        """Row- and column-major tokens in ascending significance: ``(2, B, N, C)``."""
        B, N, C = x.shape
        H, W = hw
        x_col = x.reshape(B, H, W, C).transpose(1, 2).reshape(B, N, C)
        s_row = significance.reshape(B, N)
        s_col = significance.transpose(1, 2).reshape(B, N)
        # stable: equal significance keeps the token order, so every backend picks the same
        # tokens; ONNX has no stable sort: there, ascending TopK over all N, whose tie rule
        # (lower index first, ONNX spec) is the same order. torch.export / compile keep the
        # stable sort (PyTorch's own topk does not promise an order for ties)
        keys = torch.stack([s_row, s_col])
        if onnx_export_running():
            order = torch.topk(keys, keys.shape[-1], dim=-1, largest=False, sorted=True)[1]
        else:
            order = torch.sort(keys, dim=-1, stable=True)[1]  # (2, B, N)
        return torch.gather(torch.stack([x, x_col]), 2, order[..., None].expand(-1, -1, -1, C))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int],
                significance: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        if significance is None or significance.shape != (B, *hw):
            got = None if significance is None else tuple(significance.shape)
            raise ValueError(f'SelfGuidedAttention needs the significance map of the preceding '
                             f'hybrid-scale block, shaped {(B, *hw)}; got {got}')
        hh = self.num_heads // 2
        q = _heads(self.q(x), self.num_heads)
        seqs = self.sorted_sequences(x, hw, significance).flatten(0, 1)  # (2B, N, C)
        merged = merge_sorted_tokens(seqs, self.merge_groups, self.merges)
        k1, v1 = _split_kv(self.row_kv(merged[:B]), hh)
        k2, v2 = _split_kv(self.col_kv(merged[B:]), hh)
        k, v = torch.cat([k1, k2], dim=1), torch.cat([v1, v2], dim=1)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0., scale=self.scale)
        out = _merge_heads(out) + self.lepe(x, hw)
        return self.proj_drop(self.proj(out))


class FullAttention(_LePEMixin, nn.Module):
    """F block (stage 4): multi-head attention over all tokens, fused ``kv`` (K first)."""

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        _check_dims(embed_dims, num_heads, even_heads=False)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims, bias=qkv_bias)
        self.attn_drop = attn_drop
        self._init_lepe(embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        q = _heads(self.q(x), self.num_heads)
        k, v = _split_kv(self.kv(x), self.num_heads)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0., scale=self.scale)
        return self.proj_drop(self.proj(_merge_heads(out) + self.lepe(x, hw)))


# --------------------------------------------------------------------------- references
def _softmax_attention(q, k, v, scale):
    attn = torch.softmax(scale * q @ k.transpose(-2, -1), dim=-1)
    return attn @ v, attn


def hybrid_scale_attention_reference(m: HybridScaleAttention, x, hw):
    """The H block step by step as the official code does it (explicit softmax, window loop)."""
    B, N, C = x.shape
    H, W = hw
    hh = m.num_heads // 2
    reduced, (Hs, Ws) = m.reduce(x, hw)
    kv1 = m.global_kv(reduced)
    k1 = _heads(kv1[..., :C // 2], hh)
    v1 = _heads(kv1[..., C // 2:], hh)
    o1, a1 = _softmax_attention(_heads(m.global_q(x), hh), k1, v1, m.scale)
    kv2 = m.local_kv(x)
    o2, local_sig = window_attention_reference(
        _heads(m.local_q(x), hh), _heads(kv2[..., :C // 2], hh), _heads(kv2[..., C // 2:], hh),
        hw, m.window_size, m.scale)
    g = a1.detach().mean(1).mean(1).reshape(B, Hs, Ws)
    g = g.repeat_interleave(m.sr_ratio, 1).repeat_interleave(m.sr_ratio, 2)[:, :H, :W]
    out = torch.cat([_merge_heads(o1), _merge_heads(o2)], -1) + m.lepe(x, hw)
    return m.proj(out), g + local_sig


def self_guided_attention_reference(m: SelfGuidedAttention, x, hw, significance):
    """The G block step by step: two sorts, two gathers, chunk loop, explicit softmax."""
    B, N, C = x.shape
    H, W = hw
    hh = m.num_heads // 2
    idx_row = torch.sort(significance.reshape(B, N), dim=-1)[1]
    idx_col = torch.sort(significance.transpose(1, 2).reshape(B, N), dim=-1)[1]
    x_col = x.reshape(B, H, W, C).permute(0, 2, 1, 3).reshape(B, N, C)
    xs1 = torch.stack([x[b, idx_row[b]] for b in range(B)])
    xs2 = torch.stack([x_col[b, idx_col[b]] for b in range(B)])
    seq1 = merge_sorted_tokens_reference(xs1, m.merge_groups, m.merges)
    seq2 = merge_sorted_tokens_reference(xs2, m.merge_groups, m.merges)
    kv1, kv2 = m.row_kv(seq1), m.col_kv(seq2)
    k = torch.cat([_heads(kv1[..., :C // 2], hh), _heads(kv2[..., :C // 2], hh)], 1)
    v = torch.cat([_heads(kv1[..., C // 2:], hh), _heads(kv2[..., C // 2:], hh)], 1)
    o, _ = _softmax_attention(_heads(m.q(x), m.num_heads), k, v, m.scale)
    return m.proj(_merge_heads(o) + m.lepe(x, hw))


def full_attention_reference(m: FullAttention, x, hw):
    C = x.shape[-1]
    kv = m.kv(x)
    o, _ = _softmax_attention(_heads(m.q(x), m.num_heads), _heads(kv[..., :C], m.num_heads),
                              _heads(kv[..., C:], m.num_heads), m.scale)
    return m.proj(_merge_heads(o) + m.lepe(x, hw))
