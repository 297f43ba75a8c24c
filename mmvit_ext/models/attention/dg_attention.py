"""Dynamic group attention (DG-Attention; DGT, Liu et al., IJCAI 2022, arXiv 2203.03937).

Only the paper's description is public (no code, no architecture table), so the details below are
this project's design, chosen to follow that description:

1. **Groups.** Per image and per head, the queries are clustered with spherical k-means (cosine
   similarity of L2-normalised queries) for a fixed number of iterations. Initial centroids are
   the queries at evenly spaced token positions, so the clustering is deterministic and
   evaluation repeatable. Empty clusters keep their centroid. No gradient flows through it.
2. **Keys per group.** Each group scores every key with the mean of its (raw, unnormalised)
   queries, i.e. by the group's mean attention logit, and keeps the top-k keys. Also no gradient.
3. **Attention.** Every query attends, with an ordinary softmax, to its group's k keys/values.
   Gradients flow through q, k and v as in any attention.

``num_groups`` and ``topk`` are capped at the token count, so any number of tokens works; with one
group and ``topk >= N`` the module is ordinary multi-head attention.

Fast form (:func:`grouped_attention`): queries are sorted by group and laid out in chunks of
``L`` queries that each belong to a single group (a group's last chunk is zero-padded), every
chunk gathers its group's k keys/values, and all chunks go through one
``scaled_dot_product_attention`` call. The buffer has a fixed bound of ``ceil(N / L) + G`` chunks,
so shapes are static and nothing loops over groups. No N x N matrix is built: memory is
``O(N * k)`` at fixed k. The chunk length is chosen from N and G (:func:`auto_chunk_size`): long
chunks keep fewer gathered key copies (``2k / L`` per query) and give the attention kernel
bigger tiles, short ones pad less; the result does not depend on it. In training on an
accelerator (:func:`~mmvit_ext.models.ops.memory_lean`) the gathers and the attention are
recomputed in backward, so only q, k and v are kept. Slow form
(:func:`dg_attention_reference`): dense logits with a mask "query i may see key j iff j is among
its group's top-k", for tests.

Mixed precision: routing is a discrete decision, so it is always taken in fp32 with autocast off
(k-means assignments, group means, key scores, top-k). Under autocast the module computes the
queries and keys it routes with in fp32 too (a no-grad fp32 projection), so AMP and fp32 pick the
same groups and keys for the same input; only the attention itself runs in half precision.
"""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..ops import ceil_div, plain_path_required, recompute_in_backward

__all__ = ['DynamicGroupAttention', 'DGRouting', 'kmeans_groups', 'select_group_keys',
           'grouped_attention', 'dg_attention_reference', 'auto_chunk_size']


class DGRouting(NamedTuple):
    """Which group each query is in, and which keys each group attends to."""
    assign: torch.Tensor  # (BH, N) long, group id of every query
    key_index: torch.Tensor  # (BH, G, k) long, the keys of every group


def _group_sums(x: torch.Tensor, assign: torch.Tensor, groups: int, block: int = 1024):
    """Per-group sums of ``x`` (BH, N, d) and member counts (BH, G).

    One-hot matmuls, deterministic on every device (a scatter-add is several times slower on
    CPU, and its atomics make CUDA sums order-dependent). The token axis is cut into blocks of
    ``block`` that form the batch of the product: a single ``(G x N) @ (N x d)`` per image-head
    has a tiny output and one long reduction, which a GPU runs on a handful of thread blocks.
    """
    BH, N, d = x.shape
    onehot = F.one_hot(assign, groups).to(x.dtype)  # (BH, N, G)
    counts = onehot.sum(1)
    nb = N // block
    if plain_path_required() or nb < 2:  # exporters: one product, no guard on the size
        return onehot.transpose(1, 2) @ x, counts
    full = nb * block  # whole blocks as the batch, the remainder as one more product
    sums = (onehot[:, :full].reshape(BH * nb, block, groups).transpose(1, 2)
            @ x[:, :full].reshape(BH * nb, block, d)).reshape(BH, nb, groups, d).sum(1)
    if full < N:
        sums = sums + onehot[:, full:].transpose(1, 2) @ x[:, full:]
    return sums, counts


def _routing_precision(device_type: str):
    """fp32, autocast off: routing decisions must not depend on the precision mode."""
    return torch.autocast(device_type=device_type, enabled=False)


EXPORT_CHUNK_SIZE = 128


def auto_chunk_size(num_tokens: int, num_groups: int) -> int:
    """Queries per chunk: the power of two in [64, 256] nearest ``sqrt(8 N / G)``.

    A chunk of L queries gathers its group's k keys and values (``2k / L`` copies per query)
    and a group wastes L / 2 padded queries on average: ``G L / 2 + c 2N / L`` (c: the cost of a
    copied element relative to a product) is smallest at ``L = sqrt(4 c N / G)``, taken with
    c = 2. 64 at the token counts of 224-512 inputs, 128-256 at detection sizes.
    """
    target = math.sqrt(8 * int(num_tokens) / max(int(num_groups), 1))  # int(): traced sizes
    return int(min(256, max(64, 2**round(math.log2(max(target, 1.))))))


def group_count(num_groups: int, num_tokens) -> int:
    """``min(num_groups, N)``; under torch.export (N symbolic) ``num_groups`` itself, checked at
    run time: the k-means start divides by G - 1, and the ONNX exporter takes no symbolic
    divisor. Every size an exported program accepts (>= 240) has N >= G in every stage."""
    if isinstance(num_tokens, torch.SymInt):
        torch._check(num_tokens >= num_groups)
        return num_groups
    return min(num_groups, num_tokens)


@torch.no_grad()
def kmeans_groups(q: torch.Tensor, num_groups: int, iters: int = 3) -> torch.Tensor:
    """Spherical k-means of the queries ``(BH, N, d)`` into ``min(num_groups, N)`` groups.

    Deterministic: centroids start at the queries of evenly spaced tokens. Returns ``(BH, N)``
    group ids. Memory ``O(N * G)``.
    """
    BH, N, d = q.shape
    groups = group_count(num_groups, N)
    with _routing_precision(q.device.type):
        qn = F.normalize(q.float(), dim=-1)
        # evenly spaced tokens: i (N - 1) / (G - 1) rounded half to even, as torch.round does,
        # computed in integers (exporters lack linspace)
        span = max(groups - 1, 1)
        steps = torch.arange(groups, device=q.device) * (N - 1)
        quot, rem = steps // span, steps % span
        start = quot + ((2 * rem > span) | ((2 * rem == span) & (quot % 2 == 1))).long()
        centroids = qn[:, start]  # (BH, G, d)
        assign = (qn @ centroids.transpose(1, 2)).argmax(-1)
        for _ in range(iters):
            sums, counts = _group_sums(qn, assign, groups)
            centroids = torch.where(counts[..., None] > 0, F.normalize(sums, dim=-1), centroids)
            assign = (qn @ centroids.transpose(1, 2)).argmax(-1)
    return assign


@torch.no_grad()
def select_group_keys(q: torch.Tensor, k: torch.Tensor, assign: torch.Tensor, groups: int,
                      topk: int) -> torch.Tensor:
    """Top-``min(topk, N)`` keys of every group by the group's mean query . key.

    ``q``, ``k``: ``(BH, N, d)``; returns ``(BH, G, k)`` key indices. An empty group gets some
    keys too (it has no query, so they are never used).
    """
    with _routing_precision(q.device.type):
        sums, counts = _group_sums(q.float(), assign, groups)
        mean_q = sums / counts.clamp(min=1)[..., None]
        scores = mean_q @ k.float().transpose(1, 2)  # (BH, G, N)
        return scores.topk(min(topk, k.shape[1]), dim=-1).indices


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, routing: DGRouting,
                      scale: float, chunk_size: Optional[int] = None,
                      dropout_p: float = 0.) -> torch.Tensor:
    """Each query attends to its group's selected keys. ``q, k, v``: ``(BH, N, d)``;
    ``chunk_size`` None = :func:`auto_chunk_size`."""
    BH, N, d = q.shape
    assign, key_index = routing
    groups, kk = key_index.shape[1:]
    if kk >= k.shape[1]:  # every group sees every key: plain attention, exactly
        # as (1, BH, N, d): the ONNX translation of SDPA takes 4-d inputs only
        return F.scaled_dot_product_attention(q[None], k[None], v[None], dropout_p=dropout_p,
                                              scale=scale)[0]
    if plain_path_required():
        # exporters: a length that does not depend on N (the size stays symbolic); any length
        # gives the same result, a short map only pads its last chunk
        L = chunk_size or EXPORT_CHUNK_SIZE
    else:
        L = min(chunk_size or auto_chunk_size(N, groups), N)
    symbolic = _is_symbolic(N)
    with torch.no_grad():
        # a counting sort of the queries by group, without a sort op (exporters lack a stable
        # one): a query's rank in its group is the running count of its group's one-hot column
        onehot = F.one_hot(assign, groups)  # (BH, N, G)
        counts = onehot.sum(1)  # (BH, G)
        rank = ((onehot.cumsum(1) - 1) * onehot).sum(-1)  # (BH, N), in token order
        chunks = (counts + L - 1) // L  # chunks per group
        chunk_end = chunks.cumsum(1)  # (BH, G), inclusive end
        num_chunks = ceil_div(N, L) + groups  # static bound on sum(chunks)
        slot_of_token = (chunk_end - chunks).gather(1, assign) * L + rank  # padded position
        chunk_ids = torch.arange(num_chunks, device=q.device)
        # the group of every chunk: how many groups end at or before it
        chunk_group = (chunk_end[:, None, :] <= chunk_ids[None, :, None]).sum(-1)
        # unused tail chunks: any group (a comparison, not clamp(max=groups - 1): under
        # torch.jit.trace the bound is a CPU tensor, which clamp refuses on CUDA)
        chunk_group = torch.where(chunk_group < groups, chunk_group, 0)
        chunk_keys = key_index.gather(1, chunk_group[..., None].expand(-1, -1, kk))
    if symbolic:  # outside no_grad: gradients flow through q, k, v
        return _grouped_attention_symbolic(q, k, v, slot_of_token, chunk_keys, num_chunks, L,
                                           scale, dropout_p)
    with torch.no_grad():
        # row indices into the (BH * rows, d) flattened tensors: index_select on rows is much
        # faster on CPU than gather/scatter with an index expanded over d
        base = torch.arange(BH, device=q.device)[:, None]
        P = num_chunks * L
        token_of_slot = torch.full((BH, P), N, dtype=torch.long, device=q.device)  # N: a 0 row
        tokens = torch.arange(N, device=q.device).expand(BH, N)
        token_of_slot = token_of_slot.scatter(1, slot_of_token, tokens)
        token_of_slot = (token_of_slot + base * (N + 1)).flatten()
        key_rows = (chunk_keys + base[..., None] * N).flatten()
        slot_of_token = (slot_of_token + base * P).flatten()
    q_rows = torch.cat([q, q.new_zeros(BH, 1, d)], dim=1).reshape(-1, d)
    padded = q_rows.index_select(0, token_of_slot).reshape(BH, num_chunks, L, d)
    kc = k.reshape(-1, d).index_select(0, key_rows).reshape(BH, num_chunks, kk, d)
    vc = v.reshape(-1, d).index_select(0, key_rows).reshape(BH, num_chunks, kk, d)
    out = F.scaled_dot_product_attention(padded, kc, vc, dropout_p=dropout_p, scale=scale)
    return out.reshape(-1, d).index_select(0, slot_of_token).reshape(BH, N, d)


def _is_symbolic(size) -> bool:
    return isinstance(size, torch.SymInt)


def _grouped_attention_symbolic(q, k, v, slot_of_token, chunk_keys, num_chunks, L, scale,
                                dropout_p):
    """The chunked layout of :func:`grouped_attention` for symbolic sizes (torch.export, dynamic
    torch.compile): the same gathers as batched indexing into ``(BH, chunks, L)`` index grids,
    with no reshape that splits a symbolic dimension. Such a split makes the tracer simplify the
    token count's nested floor divisions with sympy, which took minutes per block."""
    BH, N, d = q.shape
    with torch.no_grad():
        batch = torch.arange(BH, device=q.device)
        chunk_of_token, place_of_token = slot_of_token // L, slot_of_token % L
        token_of_slot = torch.full((BH, num_chunks, L), N, dtype=torch.long, device=q.device)
        token_of_slot = token_of_slot.index_put(
            (batch[:, None], chunk_of_token, place_of_token),
            torch.arange(N, device=q.device).expand(BH, N))
    padded = torch.cat([q, q.new_zeros(BH, 1, d)], dim=1)[batch[:, None, None], token_of_slot]
    kc, vc = k[batch[:, None, None], chunk_keys], v[batch[:, None, None], chunk_keys]
    out = F.scaled_dot_product_attention(padded, kc, vc, dropout_p=dropout_p, scale=scale)
    return out[batch[:, None], chunk_of_token, place_of_token]


def dg_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           routing: DGRouting, scale: float) -> torch.Tensor:
    """Dense masked form: ``softmax(q k^T * scale, masked to the group's keys) v``. O(N^2)."""
    BH, N, _ = q.shape
    assign, key_index = routing
    allowed = torch.zeros(BH, key_index.shape[1], N, dtype=torch.bool, device=q.device)
    allowed.scatter_(2, key_index, True)  # group g may see key j
    mask = allowed.gather(1, assign[..., None].expand(-1, -1, N))  # (BH, N, N)
    logits = (q @ k.transpose(1, 2)) * scale
    return logits.masked_fill(~mask, float('-inf')).softmax(-1) @ v


class DynamicGroupAttention(nn.Module):
    """Multi-head DG-Attention on ``(B, N, C)`` tokens.

    Args:
        embed_dims, num_heads: width and heads; q/k/v from one ``qkv`` Linear ((3, heads, d)
            output order), output through ``proj``.
        num_groups: query groups per image and head (capped at N).
        topk: keys per group (capped at N); ``None`` = all keys (global attention).
        kmeans_iters: Lloyd iterations after the deterministic initial assignment.
        chunk_size: queries per chunk in the fast form (a group's last chunk is padded); None
            chooses it from the token and group counts (:func:`auto_chunk_size`).
        keep_routing: keep the last forward's :class:`DGRouting` (heads of image 0) in
            ``last_routing``, for visualisation.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_groups: int = 8,
                 topk: Optional[int] = 64,
                 kmeans_iters: int = 3,
                 chunk_size: Optional[int] = None,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 keep_routing: bool = False):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        if num_groups < 1 or (topk is not None and topk < 1) or kmeans_iters < 0 \
                or (chunk_size is not None and chunk_size < 1):
            raise ValueError('num_groups, topk and chunk_size must be >= 1 and kmeans_iters '
                             f'>= 0, got {num_groups}, {topk}, {chunk_size}, {kmeans_iters}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.num_groups, self.topk = num_groups, topk
        self.kmeans_iters, self.chunk_size = kmeans_iters, chunk_size
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.keep_routing = keep_routing
        self.last_routing: Optional[DGRouting] = None
        self.exact_attention_flops = 0  # q k^T + attn v MACs of the last forward (see analysis)

    def _qkv(self, x):
        B, N, C = x.shape
        d = C // self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, d).permute(2, 0, 3, 1, 4)
        return [t.reshape(B * self.num_heads, N, d) for t in qkv]

    def _routing_qk(self, x, q, k):
        """The queries and keys to route with: ``q``, ``k`` themselves in fp32 mode; under
        autocast (or any projection to a lower precision than ``x``) the same projection redone
        in fp32, without gradient."""
        if q.dtype == x.dtype:
            return q, k
        B, N, C = x.shape
        with torch.no_grad(), _routing_precision(x.device.type):
            weight = self.qkv.weight[:2 * C].float()
            bias = None if self.qkv.bias is None else self.qkv.bias[:2 * C].float()
            qk = F.linear(x.float(), weight, bias).reshape(B, N, 2, self.num_heads, -1)
            qk = qk.permute(2, 0, 3, 1, 4).reshape(2, B * self.num_heads, N, -1)
        return qk[0], qk[1]

    def routing(self, q: torch.Tensor, k: torch.Tensor) -> DGRouting:
        """Groups (k-means of the queries) and their keys (top-k), no gradient, in fp32."""
        N = q.shape[1]
        groups = group_count(self.num_groups, N)
        if groups == 1:  # nothing to cluster
            assign = torch.zeros(q.shape[:2], dtype=torch.long, device=q.device)
        else:
            assign = kmeans_groups(q, groups, self.kmeans_iters)
        topk = N if self.topk is None else min(self.topk, N)
        if groups == 1 and topk == N:
            key_index = torch.arange(N, device=q.device).expand(q.shape[0], 1, N)
        else:
            key_index = select_group_keys(q, k, assign, groups, topk)
        return DGRouting(assign, key_index)

    def _route(self, x, q, k):
        N = q.shape[1]
        if group_count(self.num_groups, N) == 1 and (self.topk is None or self.topk >= N):
            return self.routing(q, k)  # nothing to decide: no fp32 projection needed
        return self.routing(*self._routing_qk(x, q, k))

    def _finish(self, out, B, N, C, routing):
        if self.keep_routing:
            self.last_routing = DGRouting(*(t[:self.num_heads].detach() for t in routing))
        self.exact_attention_flops = 2 * out.shape[0] * N * routing.key_index.shape[-1] * (
            C // self.num_heads)
        # no -1: inferring it divides by the symbolic N under torch.export (slow to simplify)
        out = out.reshape(B, self.num_heads, N, C // self.num_heads).transpose(1, 2).reshape(
            B, N, C)
        return self.proj_drop(self.proj(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        routing = self._route(x, q, k)
        args = (q, k, v, routing, self.scale, self.chunk_size,
                self.attn_drop if self.training else 0.)
        if recompute_in_backward(x.device, q, k, v):
            # The gathered chunk keys/values are 2k/L copies of K and V: recomputing the gathers
            # and the attention in backward keeps q, k, v only (the qkv output) instead.
            out = checkpoint(grouped_attention, *args, use_reentrant=False)
        else:
            out = grouped_attention(*args)
        return self._finish(out, B, N, C, routing)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Same routing, dense masked attention (no attention dropout)."""
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        routing = self._route(x, q, k)
        out = dg_attention_reference(q, k, v, routing, self.scale)
        return self._finish(out, B, N, C, routing)

    def extra_repr(self) -> str:
        return (f'{self.embed_dims}, heads={self.num_heads}, groups={self.num_groups}, '
                f'topk={self.topk}, kmeans_iters={self.kmeans_iters}')
