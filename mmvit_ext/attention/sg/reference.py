"""SG-Former's reference forms: the official computation step by step (loops over windows and
chunks, explicit softmax). Slow; the fast forms are checked against them. At sizes the official
model accepts (224*k inputs) nothing is padded and the fast forms equal it."""
import torch

from ..forms import register
from .merge import merge_bounds
from .tokens import heads, merge_heads

__all__ = ['window_attention_reference', 'global_attention_reference',
           'merge_sorted_tokens_reference', 'hybrid_scale_attention_reference',
           'self_guided_attention_reference', 'full_attention_reference']


def _softmax_attention(q, k, v, scale):
    attn = torch.softmax(scale * q @ k.transpose(-2, -1), dim=-1)
    return attn @ v, attn


@register('sg.window', 'reference')
def window_attention_reference(q, k, v, hw, window, scale, pad_extra=(0, 0), attn_drop=None,
                               with_significance=True):
    """A loop over windows; border windows are simply smaller (no padding at all)."""
    B, h, N, d = q.shape
    H, W = hw
    grid = lambda t: t.reshape(B, h, H, W, t.shape[-1])  # noqa: E731
    q, k, v = grid(q), grid(k), grid(v)
    out = q.new_zeros(B, h, H, W, v.shape[-1])
    received = q.new_zeros(B, H, W)
    for y in range(0, H, window):
        for x in range(0, W, window):
            qs = q[:, :, y:y + window, x:x + window].reshape(B, h, -1, d)
            ks = k[:, :, y:y + window, x:x + window].reshape(B, h, -1, d)
            vs = v[:, :, y:y + window, x:x + window].reshape(B, h, qs.shape[2], -1)
            attn = torch.softmax(scale * qs @ ks.transpose(-2, -1), dim=-1)
            wh, ww = min(window, H - y), min(window, W - x)
            out[:, :, y:y + wh, x:x + ww] = (attn @ vs).reshape(B, h, wh, ww, -1)
            received[:, y:y + wh, x:x + ww] = attn.detach().mean(1).mean(1).reshape(B, wh, ww)
    return out.reshape(B, h, N, -1), (received if with_significance else None)


@register('sg.global', 'reference')
def global_attention_reference(q, k, v, scale, significance_qk=None, attn_drop=None):
    """Explicit softmax; the map from ``significance_qk`` when given, else from the output's
    own probabilities."""
    out, attn = _softmax_attention(q, k, v, scale)
    if significance_qk is not None:
        attn = torch.softmax(scale * significance_qk[0] @ significance_qk[1].transpose(-2, -1),
                             dim=-1)
    return out, attn.detach().mean(1).mean(1)


@register('sg.merge', 'reference')
def merge_sorted_tokens_reference(tokens, groups, merges):
    """A loop over chunks, partial chunks summed over the tokens they have."""
    B, N, C = tokens.shape
    outs = []
    for (start, end, k), merge in zip(merge_bounds(N, groups), merges):
        w, b = merge.weight[0], merge.bias[0]
        for s in range(start, end, k):
            chunk = tokens[:, s:min(s + k, end)]  # (B, <=k, C)
            outs.append((chunk * w[:chunk.shape[1], None]).sum(1) + b)
    return torch.stack(outs, dim=1)


@register('sg.hybrid', 'reference')
def hybrid_scale_attention_reference(m, x, hw, pad_extra=(0, 0)):
    """The H block as the official code does it (explicit softmax, window loop)."""
    B, N, C = x.shape
    H, W = hw
    hh = m.num_heads // 2
    reduced, (Hs, Ws) = m.reduce(x, hw)
    kv1 = m.global_kv(reduced)
    k1 = heads(kv1[..., :C // 2], hh)
    v1 = heads(kv1[..., C // 2:], hh)
    o1, a1 = _softmax_attention(heads(m.global_q(x), hh), k1, v1, m.scale)
    kv2 = m.local_kv(x)
    o2, local_sig = window_attention_reference(
        heads(m.local_q(x), hh), heads(kv2[..., :C // 2], hh), heads(kv2[..., C // 2:], hh),
        hw, m.window_size, m.scale)
    g = a1.detach().mean(1).mean(1).reshape(B, Hs, Ws)
    g = g.repeat_interleave(m.sr_ratio, 1).repeat_interleave(m.sr_ratio, 2)[:, :H, :W]
    out = torch.cat([merge_heads(o1), merge_heads(o2)], -1) + m.lepe(x, hw)
    return m.proj(out), g + local_sig


@register('sg.guided', 'reference')
def self_guided_attention_reference(m, x, hw, significance):
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
    k = torch.cat([heads(kv1[..., :C // 2], hh), heads(kv2[..., :C // 2], hh)], 1)
    v = torch.cat([heads(kv1[..., C // 2:], hh), heads(kv2[..., C // 2:], hh)], 1)
    o, _ = _softmax_attention(heads(m.q(x), m.num_heads), k, v, m.scale)
    return m.proj(merge_heads(o) + m.lepe(x, hw))


@register('sg.full', 'reference')
def full_attention_reference(m, x, hw):
    C = x.shape[-1]
    kv = m.kv(x)
    o, _ = _softmax_attention(heads(m.q(x), m.num_heads), heads(kv[..., :C], m.num_heads),
                              heads(kv[..., C:], m.num_heads), m.scale)
    return m.proj(merge_heads(o) + m.lepe(x, hw))
