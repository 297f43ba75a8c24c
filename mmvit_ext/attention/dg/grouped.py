"""DG-Attention's core: each query attends to its group's selected keys, in chunks.

Queries are sorted by group and laid out in chunks of ``L`` queries that each belong to a single
group (a group's last chunk is zero-padded), every chunk gathers its group's k keys/values, and
all chunks go through one ``scaled_dot_product_attention`` call. The buffer has a fixed bound of
``ceil(N / L) + G`` chunks, so shapes are static and nothing loops over groups. No N x N matrix
is built: memory is ``O(N * k)`` at fixed k. The result does not depend on L.

Forms: ``fast`` chooses L from N and G (:func:`auto_chunk_size`); ``traceable`` uses a length
that does not depend on N and, for symbolic sizes (``torch.export``, dynamic ``torch.compile``),
a layout with no reshape that splits a symbolic dimension; ``compiled``, under torch < 2.5's
``torch.compile`` only, is ``traceable`` with the attention products and softmax spelt out;
``lean`` (:mod:`.lean`) and ``reference`` (:mod:`.reference`) are in their own files.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..forms import dispatch, register, under_old_torch_compile
from ..shapes import ceil_div, one_hot
from .routing import DGRouting

__all__ = ['grouped_attention', 'auto_chunk_size', 'EXPORT_CHUNK_SIZE']

EXPORT_CHUNK_SIZE = 128


def auto_chunk_size(num_tokens: int, num_groups: int) -> int:
    """Queries per chunk: the power of two in [64, 256] nearest ``sqrt(8 N / G)``.

    A chunk of L queries gathers its group's k keys and values (``2k / L`` copies per query)
    and a group wastes L / 2 padded queries on average: ``G L / 2 + c 2N / L`` (c: the cost of a
    copied element relative to a product) is smallest at ``L = sqrt(4 c N / G)``, taken with
    c = 2. 64 at the token counts of 224-512 inputs, 128-256 at detection sizes.

    Nearest on a log scale: the boundaries are the geometric means, ``sqrt(8 N / G) = 2^6.5``
    and ``2^7.5``, i.e. ``N = 1024 G`` and ``4096 G``. Compared as whole numbers, so a traced
    size is guarded by its branch only: torch 2.5's dynamo broke the graph at a ``math.log2``
    of a symbolic size, and then compiled again at every new input size.
    """
    groups = max(num_groups, 1)
    if num_tokens <= 1024 * groups:  # (at a boundary, as round() of the log did)
        return 64
    return 128 if num_tokens < 4096 * groups else 256


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, routing: DGRouting,
                      scale: float, chunk_size: Optional[int] = None,
                      dropout_p: float = 0.) -> torch.Tensor:
    """Each query attends to its group's selected keys, in the chosen form. ``q, k, v``:
    ``(BH, N, d)``; ``chunk_size`` None = chosen by the form."""
    return dispatch('dg.attention', q, k, v, routing, scale, chunk_size, dropout_p)


@register('dg.attention', 'fast')
def grouped_attention_fast(q, k, v, routing, scale, chunk_size=None, dropout_p=0.):
    N = q.shape[1]
    L = min(chunk_size or auto_chunk_size(N, routing.key_index.shape[1]), N)
    return _chunked(q, k, v, routing, scale, L, dropout_p)


@register('dg.attention', 'traceable')
def grouped_attention_traceable(q, k, v, routing, scale, chunk_size=None, dropout_p=0.):
    # a length that does not depend on N (the size stays symbolic); any length gives the same
    # result, a short map only pads its last chunk
    return _chunked(q, k, v, routing, scale, chunk_size or EXPORT_CHUNK_SIZE, dropout_p)


@register('dg.attention', 'compiled', available=under_old_torch_compile)
def grouped_attention_explicit_softmax(q, k, v, routing, scale, chunk_size=None, dropout_p=0.):
    # torch < 2.5 under torch.compile: the traceable form with the products and softmax spelt
    # out (torch 2.1.2's inductor failed a layout check after the fused attention call)
    return _chunked(q, k, v, routing, scale, chunk_size or EXPORT_CHUNK_SIZE, dropout_p,
                    attend=_explicit_attention)


def _explicit_attention(q, k, v, dropout_p=0., scale=None):
    weights = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v


def _chunked(q, k, v, routing, scale, L, dropout_p, attend=F.scaled_dot_product_attention):
    BH, N, d = q.shape
    assign, key_index = routing
    groups, kk = key_index.shape[1:]
    if kk >= k.shape[1]:  # every group sees every key: plain attention, exactly
        # as (1, BH, N, d): the ONNX translation of SDPA takes 4-d inputs only
        return attend(q[None], k[None], v[None], dropout_p=dropout_p, scale=scale)[0]
    with torch.no_grad():
        # a counting sort of the queries by group, without a sort op (exporters lack a stable
        # one): a query's rank in its group is the running count of its group's one-hot column
        onehot = one_hot(assign, groups)  # (BH, N, G)
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
    if _is_symbolic(N):  # outside no_grad: gradients flow through q, k, v
        return _symbolic_layout(q, k, v, slot_of_token, chunk_keys, num_chunks, L, scale,
                                dropout_p, attend)
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
    out = attend(padded, kc, vc, dropout_p=dropout_p, scale=scale)
    return out.reshape(-1, d).index_select(0, slot_of_token).reshape(BH, N, d)


def _is_symbolic(size) -> bool:
    return isinstance(size, torch.SymInt)


def _symbolic_layout(q, k, v, slot_of_token, chunk_keys, num_chunks, L, scale, dropout_p,
                     attend=F.scaled_dot_product_attention):
    """The chunked layout for symbolic sizes: the same gathers as batched indexing into
    ``(BH, chunks, L)`` index grids, with no reshape that splits a symbolic dimension. Such a
    split makes the tracer simplify the token count's nested floor divisions with sympy, which
    took minutes per block."""
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
    out = attend(padded, kc, vc, dropout_p=dropout_p, scale=scale)
    return out[batch[:, None], chunk_of_token, place_of_token]
