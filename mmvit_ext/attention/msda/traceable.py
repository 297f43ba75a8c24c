"""MSDA's traceable form: the shift-and-accumulate of the fast form in out-of-place standard ops,
which every tracer and exporter understands and which follows the input size (autograd
differentiates it)."""
import torch
import torch.nn.functional as F

from ..forms import register
from ..shapes import accumulation_dtype
from .module import offsets

__all__ = ['dilated_local_attention_traceable']


@register('msda', 'traceable')
def dilated_local_attention_traceable(q, k, v, kernel_size, dilation, scale):
    H, W = q.shape[-2:]
    pad = dilation * (kernel_size - 1) // 2
    k_pad = F.pad(k, (pad, pad, pad, pad))
    v_pad = F.pad(v, (pad, pad, pad, pad))
    shifts = offsets(kernel_size, dilation)
    logits = torch.stack([(q * k_pad[..., di:di + H, dj:dj + W]).sum(2) for di, dj in shifts])
    attn = torch.softmax(logits.to(accumulation_dtype(q.dtype)) * scale, dim=0).to(q.dtype)
    di, dj = shifts[0]
    out = attn[0].unsqueeze(2) * v_pad[..., di:di + H, dj:dj + W]
    for idx, (di, dj) in enumerate(shifts[1:], 1):
        out = out + attn[idx].unsqueeze(2) * v_pad[..., di:di + H, dj:dj + W]
    return out
