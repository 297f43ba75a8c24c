"""The global half of SG-Former's hybrid-scale attention: all N tokens attend to the
``N / sr^2`` reduced ones, and the attention every key receives is returned with the output.

The fast form runs over chunks of queries and, in training, recomputes each chunk's
probabilities in backward instead of keeping the ``(B, h, N, N / sr^2)`` tensor (564 MB per
image pair at stage 1 of an 800x1344 input). Significance is a routing decision: the caller
gives fp32 queries and keys for it under autocast (``significance_qk``), so that AMP and fp32
sort the same tokens. The traceable form is one product, with no loop over a size.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..forms import dispatch, register
from ..shapes import accumulation_dtype

__all__ = ['global_attention_with_significance', 'CHUNK_ELEMENTS']

# elements of one chunk's (B, h, chunk, M) probabilities: 64 MB in fp32
CHUNK_ELEMENTS = 1 << 24


def _query_chunks(q: torch.Tensor, num_keys: int):
    """Query ranges whose ``(B, h, chunk, M)`` probabilities hold at most ``CHUNK_ELEMENTS``."""
    B, h, N, _ = q.shape
    step = max(1, CHUNK_ELEMENTS // max(B * h * num_keys, 1))
    return [(s, min(s + step, N)) for s in range(0, N, step)]


def chunk_probs(q_chunk, k, scale):
    """Softmax probabilities of a query chunk, in fp32 for half inputs (as autocast's softmax)."""
    logits = (q_chunk * scale) @ k.transpose(-2, -1)
    return logits.softmax(dim=-1, dtype=accumulation_dtype(logits.dtype))


def _chunked_attention(q, k, v, scale, chunks, received=None):
    """``softmax(q k^T) v`` chunk by chunk; adds each key's received probability (summed over
    heads and queries) to ``received`` if given. The one loop every path runs, so the map is the
    same number whichever path computed it."""
    out = q.new_empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype)
    for s, e in chunks:
        p = chunk_probs(q[:, :, s:e], k, scale)
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
                p = chunk_probs(qc, k, ctx.scale)  # (B, h, c, M), fp32 for half inputs
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
    return dispatch('sg.global', q, k, v, scale, significance_qk, attn_drop)


@register('sg.global', 'fast')
def global_attention_chunked(q, k, v, scale, significance_qk=None, attn_drop=None):
    B, h, N, _ = q.shape
    own = significance_qk is None
    chunks = _query_chunks(q, k.shape[2])
    received = _received_buffer(q, k)
    if attn_drop is not None and attn_drop.training and attn_drop.p > 0:
        probs = chunk_probs(q, k, scale)
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
        _add_received(significance_qk, scale, received)
    return out, received / (h * N)


@register('sg.global', 'traceable')
def global_attention_one_product(q, k, v, scale, significance_qk=None, attn_drop=None):
    B, h, N, _ = q.shape
    probs = chunk_probs(q, k, scale)
    out = (probs if attn_drop is None else attn_drop(probs)).to(v.dtype) @ v
    if significance_qk is None:
        received = probs.detach().sum(dim=(1, 2), dtype=accumulation_dtype(q.dtype))
    else:
        received = _received_buffer(q, k)
        _add_received(significance_qk, scale, received)
    return out, received / (h * N)


def _add_received(significance_qk, scale, received):
    """Add the received sums of the given fp32 queries and keys to ``received``."""
    with torch.no_grad(), torch.autocast(device_type=received.device.type, enabled=False):
        sq, sk = significance_qk
        _chunked_attention(sq, sk, sk[..., :0], scale, _query_chunks(sq, sk.shape[2]),
                           received)
