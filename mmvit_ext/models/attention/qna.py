"""QnA: local attention with learned queries (Arar, Shamir, Bermano; CVPR 2022, arXiv 2112.11435).

Every k x k window is attended by the same ``nq`` learned queries (unit-normalised per head, then
scaled by 1/sqrt(d)) instead of by its centre token. A token therefore has one score per query and
head, whatever window it falls in, and the window softmax becomes two depthwise convolutions::

    num = dwconv(exp(s) * V, exp(rpe) * a)      den = dwconv(exp(s), exp(rpe))
    out = sum_q num / den                        (s: scores, rpe: relative logit bias per offset,
                                                  a: learned per-offset scale, numerator only)

Out-of-image positions are zero in both convolutions, i.e. they are left out of the softmax (a
masked softmax, not zero keys). Keys are never materialised and no k*k-sized tensor is built: the
largest intermediate is ``(B, H, W, nq * F)``, so memory is linear in the image and independent of k.

The core runs in fp32 even under autocast (``exp`` overflows in fp16) and subtracts, per image,
query and head, the maximum score over all positions (and per channel the maximum of ``rpe``): a
constant factor of every numerator and denominator term, so the ratio is unchanged while ``exp``
can no longer overflow. (The official form overflows once a score exceeds ~88; this one is exact
while the scores of one image, query and head span less than ~87, beyond which a whole window
could underflow.) :func:`qna_reference` is the explicit neighbourhood softmax for tests.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import lecun_normal_
from ..ops import ceil_div, crop_to, plain_path_required, window_key_mask

__all__ = ['QnAAttention', 'qna_attention', 'qna_reference', 'normalized_queries',
           'local_attention_unfold', 'WindowMSA']


def normalized_queries(query: torch.Tensor, heads: int) -> torch.Tensor:
    """``(nq, F)`` learned queries -> ``(nq, heads, d)``, unit norm per head, divided by sqrt(d)."""
    nq, feats = query.shape
    d = feats // heads
    q = query.reshape(nq, heads, d)
    return q / (q.norm(dim=-1, keepdim=True) + 1e-6) / math.sqrt(d)


def _scores_and_values(x, query, key_weight, value_weight, heads):
    """Scores ``(B, H, W, nq*h)`` (channel q*h + head) and values ``(B, H, W, F)``.

    Keys are never formed: the queries are folded into the key projection first
    (``(Din, nq, h)``), as the official fused layer does.
    """
    din = x.shape[-1]
    nq, feats = query.shape
    q = normalized_queries(query, heads)
    folded = torch.einsum('chd,qhd->cqh', key_weight.reshape(din, heads, feats // heads), q)
    scores = x @ folded.reshape(din, nq * heads)
    values = F.linear(x, value_weight)
    return scores, values


def qna_attention(x: torch.Tensor, query: torch.Tensor, key_weight: torch.Tensor,
                  value_weight: torch.Tensor, rpe_bias: torch.Tensor, attn_scale: torch.Tensor,
                  heads: int, kernel_size: int, stride: int = 1) -> torch.Tensor:
    """Fast QnA aggregation (before the output projection).

    Args:
        x: ``(B, H, W, Din)`` (NHWC, the LayerNorm'ed block input).
        query: ``(nq, F)``; key_weight: ``(Din, F)`` (official in x out layout);
        value_weight: ``(F, Din)`` (a Linear weight); rpe_bias, attn_scale: ``(k*k, nq*heads)``,
            rows ``u*k + v`` (u = row offset), columns ``q*heads + head``.
    Returns:
        ``(B, H', W', F)`` with ``H' = ceil(H / stride)`` (padding ``(k - 1) // 2``).
    """
    B, H, W, _ = x.shape
    nq, feats = query.shape
    d = feats // heads
    k, pad = kernel_size, (kernel_size - 1) // 2
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        scores, values = _scores_and_values(x, query.float(), key_weight.float(),
                                            value_weight.float(), heads)
        # exp(s - max): a per-(image, query, head) constant that cancels in num / den
        scores = scores - scores.detach().flatten(1, 2).amax(dim=1)[:, None, None, :]
        e = scores.exp()  # (B, H, W, nq*h)
        rpe = rpe_bias.float()
        k_den = (rpe - rpe.detach().amax(dim=0, keepdim=True)).exp()  # (k*k, nq*h)
        k_num = k_den * attn_scale.float().reshape(k * k, nq * heads)
        weighted = (e.reshape(B, H, W, nq, heads, 1) * values.reshape(B, H, W, 1, heads, d))
        # each (query, head) kernel once per channel of the head: an expand, not
        # repeat_interleave, whose repeat count (a traced size under torch.jit.trace) would
        # become a CPU index tensor and fail on CUDA
        k_num = k_num.t()[:, None].expand(nq * heads, d, k * k)
        # channels-last views: the depthwise convs read NHWC memory directly
        num = F.conv2d(weighted.reshape(B, H, W, nq * feats).permute(0, 3, 1, 2),
                       k_num.reshape(nq * feats, 1, k, k),
                       stride=stride, padding=pad, groups=nq * feats)
        den = F.conv2d(e.permute(0, 3, 1, 2), k_den.t().reshape(nq * heads, 1, k, k),
                       stride=stride, padding=pad, groups=nq * heads)
        Ho, Wo = num.shape[2:]
        num = num.permute(0, 2, 3, 1).reshape(B, Ho, Wo, nq, heads, d)
        den = den.permute(0, 2, 3, 1).reshape(B, Ho, Wo, nq, heads, 1)
        return (num / den).sum(dim=3).reshape(B, Ho, Wo, feats)


def qna_reference(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads, kernel_size,
                  stride=1):
    """Slow form: every window explicitly (unfold), a softmax over its in-image positions with
    the relative bias, the per-offset scale on the weights, queries summed. For tests."""
    B, H, W, din = x.shape
    nq, feats = query.shape
    d = feats // heads
    k, pad = kernel_size, (kernel_size - 1) // 2
    q = normalized_queries(query, heads)  # (nq, h, d)
    keys = F.linear(x, key_weight.t()).reshape(B, H, W, heads, d)
    values = F.linear(x, value_weight).reshape(B, H, W, heads, d)

    def windows(t):  # (B, H, W, C) -> (B, L, k*k, C) with L output positions
        cols = F.unfold(t.permute(0, 3, 1, 2), k, padding=pad, stride=stride)
        return cols.reshape(B, t.shape[-1], k * k, -1).permute(0, 3, 2, 1)

    kw = windows(keys.reshape(B, H, W, feats)).reshape(B, -1, k * k, heads, d)
    vw = windows(values.reshape(B, H, W, feats)).reshape(B, -1, k * k, heads, d)
    inside = windows(x.new_ones(B, H, W, 1))[..., 0] > 0  # (B, L, k*k)
    logits = torch.einsum('blohd,qhd->blqho', kw, q)  # (B, L, nq, h, k*k)
    rpe = rpe_bias.reshape(k * k, nq, heads).permute(1, 2, 0)  # (nq, h, k*k)
    logits = logits + rpe
    logits = logits.masked_fill(~inside[:, :, None, None, :], float('-inf'))
    weights = logits.softmax(dim=-1) * attn_scale.reshape(k * k, nq, heads).permute(1, 2, 0)
    out = torch.einsum('blqho,blohd->blhd', weights, vw)  # queries summed
    Ho = (H + 2 * pad - k) // stride + 1
    return out.reshape(B, Ho, -1, feats)


def local_attention_unfold(x: torch.Tensor, qkv_weight: torch.Tensor, heads: int,
                           kernel_size: int, products: str = 'broadcast') -> torch.Tensor:
    """The usual unfold-based local attention (SASA-style: each pixel's own query over its k x k
    neighbourhood, out-of-image positions masked), the baseline QnA is compared with.

    ``x``: ``(B, H, W, C)``; ``qkv_weight``: ``(3F, C)``. Returns ``(B, H, W, F)``.
    ``products``: 'broadcast' (multiply-and-sum) or 'matmul' (``einsum``, batched matmuls) for
    the window logits and output; same result, offered so the baseline's form can be checked.
    """
    if products not in ('broadcast', 'matmul'):
        raise ValueError(f"products must be 'broadcast' or 'matmul', got {products!r}")
    B, H, W, _ = x.shape
    feats = qkv_weight.shape[0] // 3
    d = feats // heads
    k, pad = kernel_size, (kernel_size - 1) // 2
    q, kv = F.linear(x, qkv_weight).split([feats, 2 * feats], dim=-1)
    cols = F.unfold(kv.permute(0, 3, 1, 2), k, padding=pad)  # (B, 2F*k*k, H*W)
    cols = cols.reshape(B, 2, heads, d, k * k, H * W)
    inside = F.unfold(x.new_ones(1, 1, H, W), k, padding=pad)[0] > 0  # (k*k, H*W)
    q = q.reshape(B, H * W, heads, d).permute(0, 2, 3, 1)  # (B, h, d, HW)
    if products == 'matmul':
        logits = torch.einsum('bhdn,bhdkn->bhkn', q, cols[:, 0]) / math.sqrt(d)
    else:
        logits = (q[:, :, :, None] * cols[:, 0]).sum(2) / math.sqrt(d)  # (B, h, k*k, HW)
    attn = logits.masked_fill(~inside, float('-inf')).softmax(dim=2)
    if products == 'matmul':
        out = torch.einsum('bhkn,bhdkn->bhdn', attn, cols[:, 1])
    else:
        out = (attn[:, :, None] * cols[:, 1]).sum(3)  # (B, h, d, HW)
    return out.reshape(B, feats, H, W).permute(0, 2, 3, 1)


class QnAAttention(nn.Module):
    """The QnA layer: ``to_out(qna_attention(x))`` on NHWC maps.

    Parameter names follow the official ``FusedKQnA`` (``query``, ``Wk`` as ``key_weight`` in the
    official in x out layout, ``to_v``, ``to_out``, ``rpe_bias``, ``attn_scale_weights`` as
    ``attn_scale``); none of the projections has a bias.
    """

    def __init__(self, in_dims: int, embed_dims: int, num_heads: int, kernel_size: int = 3,
                 stride: int = 1, num_queries: int = 2):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        if kernel_size % 2 == 0:
            raise ValueError(f'QnA needs an odd kernel_size, got {kernel_size}')
        self.in_dims, self.embed_dims, self.num_heads = in_dims, embed_dims, num_heads
        self.kernel_size, self.stride, self.num_queries = kernel_size, stride, num_queries
        self.query = nn.Parameter(torch.empty(num_queries, embed_dims))
        self.key_weight = nn.Parameter(torch.empty(in_dims, embed_dims))
        self.to_v = nn.Linear(in_dims, embed_dims, bias=False)
        self.to_out = nn.Linear(embed_dims, embed_dims, bias=False)
        self.rpe_bias = nn.Parameter(torch.empty(kernel_size**2, num_queries * num_heads))
        self.attn_scale = nn.Parameter(torch.empty(kernel_size**2, num_queries * num_heads))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """The official initialisation (Flax ``FusedKQnA`` as QnA-ViT configures it)."""
        d = self.embed_dims // self.num_heads
        # JAX truncated_normal over [-2, 2] (not variance-corrected), times sqrt(1 / d)
        nn.init.trunc_normal_(self.query, std=1., a=-2., b=2.).mul_(math.sqrt(1. / d))
        for w, fan_in in ((self.key_weight.T, self.in_dims), (self.to_v.weight, self.in_dims),
                          (self.to_out.weight, self.embed_dims)):
            lecun_normal_(w, fan_in)
        nn.init.zeros_(self.rpe_bias)  # QnAStage passes zeros as the position-embedding init
        nn.init.normal_(self.attn_scale, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = qna_attention(x, self.query, self.key_weight, self.to_v.weight, self.rpe_bias,
                            self.attn_scale, self.num_heads, self.kernel_size, self.stride)
        return self.to_out(out.to(x.dtype))

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        out = qna_reference(x, self.query, self.key_weight, self.to_v.weight, self.rpe_bias,
                            self.attn_scale, self.num_heads, self.kernel_size, self.stride)
        return self.to_out(out)

    def extra_repr(self) -> str:
        return (f'{self.in_dims} -> {self.embed_dims}, heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'queries={self.num_queries}')


class WindowMSA(nn.Module):
    """QnA-ViT's multi-head self-attention in ``ws x ws`` windows (stages 3-4), on NHWC maps.

    ``qkv`` (no bias) orders its 3C outputs as Swin/timm do, ``(3, heads, head_dim)``; the
    official ``to_qkv`` interleaves them per head (head i owns columns ``[3di, 3di + 3d)``) and
    the converter reorders them. ``proj`` (official ``to_out``) has no bias either; ``rpe_bias``
    is Swin's relative position bias table ``((2ws - 1)^2, heads)`` with Swin's index.

    ``mode='window'`` (official): windows of ``ws``; a map that is not a multiple of ``ws`` is
    padded and the padded tokens are masked out as keys. At 224 input every stage-3/4 map is one
    window. ``mode='global'``: one window over the whole map, relative offsets beyond the table's
    ``+-(ws - 1)`` clamped to its edge; identical to ``'window'`` when the map fits one window.
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int, mode: str = 'window'):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        if mode not in ('window', 'global'):
            raise ValueError(f"WindowMSA mode must be 'window' or 'global', got {mode!r}")
        self.embed_dims, self.num_heads, self.window_size, self.mode = (
            embed_dims, num_heads, window_size, mode)
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=False)
        self.proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.rpe_bias = nn.Parameter(torch.zeros((2 * window_size - 1)**2, num_heads))
        self._table_index = {}  # (h, w, device) -> flat (h*w * h*w) index into rpe_bias

    def relative_bias(self, h: int, w: int) -> torch.Tensor:
        """``(heads, h*w, h*w)`` bias for an ``h x w`` window (offsets clamped to the table).

        The lookup is an embedding (not ``rpe_bias[index]``): both gather the same numbers, but
        the backward of advanced indexing accumulates the many duplicate indices serially on
        CUDA (a 25x42 global window reads a 13x13 table 1.1 million times), while the embedding
        backward reduces sorted segments in parallel, deterministically.
        """
        if plain_path_required():  # traced sizes: build the index from them, no cache
            index = self._offset_index(h, w, self.rpe_bias.device)
        else:
            key = (h, w, self.rpe_bias.device)
            if key not in self._table_index:  # the index depends on the window shape only
                self._table_index[key] = self._offset_index(h, w, self.rpe_bias.device)
            index = self._table_index[key]
        L = h * w
        bias = F.embedding(index, self.rpe_bias)  # (L*L, heads)
        return bias.t().contiguous().view(self.num_heads, L, L)  # SDPA kernels want stride 1

    def _offset_index(self, h, w, device):
        ws = self.window_size
        ys = torch.arange(h, device=device)[:, None].expand(h, w).reshape(-1)
        xs = torch.arange(w, device=device)[None, :].expand(h, w).reshape(-1)
        dy = (ys[:, None] - ys[None]).clamp(-(ws - 1), ws - 1) + ws - 1
        dx = (xs[:, None] - xs[None]).clamp(-(ws - 1), ws - 1) + ws - 1
        return (dy * (2 * ws - 1) + dx).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        heads, d = self.num_heads, C // self.num_heads
        if self.mode == 'global':  # one window, the map itself: nothing to pad
            wh, ww, Hp, Wp, nh, nw = H, W, H, W, 1, 1
            padded = False
        else:
            wh = ww = self.window_size
            nh, nw = ceil_div(H, wh), ceil_div(W, ww)
            Hp, Wp = nh * wh, nw * ww
            # exporters see the padded form always (a shape test would be frozen into the graph)
            padded = plain_path_required() or (Hp, Wp) != (H, W)
        if padded:
            x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        # explicit sizes, no -1: symbolic shapes (torch.export) then need no divisibility guard
        nwin, L = B * nh * nw, wh * ww
        t = x.reshape(B, nh, wh, nw, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(nwin, L, C)
        qkv = self.qkv(t).reshape(nwin, L, 3, heads, d).permute(2, 0, 3, 1, 4)
        mask = self.relative_bias(wh, ww)[None].to(x.dtype)  # (1, heads, L, L)
        if padded:
            # padded tokens are masked out as keys: (windows, heads, L, L), tiled over the batch
            valid = window_key_mask(H, W, Hp, Wp, wh, ww, x.device)[:, None, None]
            mask = mask.masked_fill(~valid, torch.finfo(x.dtype).min).repeat(B, 1, 1, 1)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        out = out.transpose(1, 2)
        if plain_path_required():  # a copy of known layout: no view-or-copy test on symbols
            out = out.clone(memory_format=torch.contiguous_format)
        out = self.proj(out.reshape(nwin, L, C))
        out = out.reshape(B, nh, nw, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        return crop_to(out, H, W, dim=1)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Loop over windows, border windows simply smaller, explicit softmax."""
        B, H, W, C = x.shape
        heads, d = self.num_heads, C // self.num_heads
        wh, ww = (H, W) if self.mode == 'global' else (self.window_size, self.window_size)
        out = torch.zeros_like(x)
        for y in range(0, H, wh):
            for x0 in range(0, W, ww):
                win = x[:, y:y + wh, x0:x0 + ww]
                h, w = win.shape[1:3]
                q, k, v = self.qkv(win.reshape(B, h * w, C)).reshape(B, h * w, 3, heads,
                                                                     d).unbind(2)
                logits = torch.einsum('bihd,bjhd->bhij', q, k) / math.sqrt(d)
                attn = (logits + self.relative_bias(h, w)).softmax(-1)
                o = torch.einsum('bhij,bjhd->bihd', attn, v).reshape(B, h, w, C)
                out[:, y:y + h, x0:x0 + w] = self.proj(o)
        return out
