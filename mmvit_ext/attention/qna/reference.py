"""QnA's reference forms: every window explicitly (unfold, or a loop over windows), an explicit
softmax. Slow; the fast forms are checked against them."""
import math

import torch
import torch.nn.functional as F

from ..forms import register
from .module import normalized_queries

__all__ = ['qna_reference', 'window_msa_reference']


@register('qna', 'reference')
def qna_reference(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads, kernel_size,
                  stride=1):
    """A softmax over each window's in-image positions with the relative bias, the per-offset
    scale on the weights, the queries summed."""
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


@register('qna.window_msa', 'reference')
def window_msa_reference(m, x: torch.Tensor) -> torch.Tensor:
    """:class:`WindowMSA` by a loop over windows, border windows simply smaller, explicit
    softmax."""
    B, H, W, C = x.shape
    heads, d = m.num_heads, C // m.num_heads
    wh, ww = (H, W) if m.mode == 'global' else (m.window_size, m.window_size)
    out = torch.zeros_like(x)
    for y in range(0, H, wh):
        for x0 in range(0, W, ww):
            win = x[:, y:y + wh, x0:x0 + ww]
            h, w = win.shape[1:3]
            q, k, v = m.qkv(win.reshape(B, h * w, C)).reshape(B, h * w, 3, heads, d).unbind(2)
            logits = torch.einsum('bihd,bjhd->bhij', q, k) / math.sqrt(d)
            attn = (logits + m.relative_bias(h, w)).softmax(-1)
            o = torch.einsum('bhij,bjhd->bihd', attn, v).reshape(B, h, w, C)
            out[:, y:y + h, x0:x0 + w] = m.proj(o)
    return out
