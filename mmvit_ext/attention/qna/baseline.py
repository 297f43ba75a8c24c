"""The usual unfold-based local attention, the baseline QnA is compared with (benchmarks)."""
import math

import torch
import torch.nn.functional as F

__all__ = ['local_attention_unfold']


def local_attention_unfold(x: torch.Tensor, qkv_weight: torch.Tensor, heads: int,
                           kernel_size: int, products: str = 'broadcast') -> torch.Tensor:
    """SASA-style local attention: each pixel's own query over its k x k neighbourhood,
    out-of-image positions masked.

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
