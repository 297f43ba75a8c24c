"""DG-Attention's reference form: dense logits with a mask "query i may see key j iff j is among
its group's top-k". O(N^2); for tests."""
import torch

from ..forms import register

__all__ = ['dg_attention_reference']


@register('dg.attention', 'reference')
def dg_attention_reference(q, k, v, routing, scale, chunk_size=None, dropout_p=0.):
    """``softmax(q k^T * scale, masked to the group's keys) v`` (no dropout)."""
    BH, N, _ = q.shape
    assign, key_index = routing
    allowed = torch.zeros(BH, key_index.shape[1], N, dtype=torch.bool, device=q.device)
    allowed.scatter_(2, key_index, True)  # group g may see key j
    mask = allowed.gather(1, assign[..., None].expand(-1, -1, N))  # (BH, N, N)
    logits = (q @ k.transpose(1, 2)) * scale
    return logits.masked_fill(~mask, float('-inf')).softmax(-1) @ v
