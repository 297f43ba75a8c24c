"""MSDA's fast form: walks the k*k shifted views of a zero-padded K/V and accumulates, so no
copy of K or V is made; the backward is written by hand and scatters the key/value gradients
into one padded buffer in place (autograd on slices would allocate a full padded zero tensor per
offset)."""
import torch
import torch.nn.functional as F

from ..forms import register
from ..shapes import accumulation_dtype
from .module import offsets

__all__ = ['dilated_local_attention_fast']


class _DilatedLocalAttention(torch.autograd.Function):
    """Shift-and-accumulate sliding-window attention with a hand-written backward. (The FLOP
    counter knows this class by name: ``mmvit_ext.analysis.complexity``.)"""

    @staticmethod
    def forward(ctx, q, k, v, kernel_size: int, dilation: int, scale: float):
        B, h, d, H, W = q.shape
        pad = dilation * (kernel_size - 1) // 2
        shifts = offsets(kernel_size, dilation)
        q = q.contiguous()
        k_pad = F.pad(k, (pad, pad, pad, pad))
        v_pad = F.pad(v, (pad, pad, pad, pad))
        # Logits in (K, B, h, H, W): each offset's slab is contiguous.
        logits = q.new_empty((len(shifts), B, h, H, W))
        prod = torch.empty_like(q)
        for idx, (di, dj) in enumerate(shifts):
            torch.mul(q, k_pad[..., di:di + H, dj:dj + W], out=prod)
            torch.sum(prod, dim=2, out=logits[idx])
        # Softmax in fp32 for half inputs; the exp of logits of fp16 maps overflows easily.
        attn = torch.softmax(logits.to(accumulation_dtype(q.dtype)) * scale, dim=0).to(q.dtype)
        out = torch.zeros_like(q)
        for idx, (di, dj) in enumerate(shifts):
            out.addcmul_(attn[idx].unsqueeze(2), v_pad[..., di:di + H, dj:dj + W])
        ctx.save_for_backward(q, k_pad, v_pad, attn)
        ctx.geometry = (kernel_size, dilation, scale, pad)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k_pad, v_pad, attn = ctx.saved_tensors
        kernel_size, dilation, scale, pad = ctx.geometry
        H, W = q.shape[-2:]
        shifts = offsets(kernel_size, dilation)
        grad_out = grad_out.contiguous()
        # d attn_p = <grad_out, v_p>
        grad_attn = torch.empty_like(attn)
        prod = torch.empty_like(q)
        for idx, (di, dj) in enumerate(shifts):
            torch.mul(grad_out, v_pad[..., di:di + H, dj:dj + W], out=prod)
            torch.sum(prod, dim=2, out=grad_attn[idx])
        # softmax backward, then the 1/sqrt(d) scale of the logits
        grad_logits = attn * (grad_attn - (attn * grad_attn).sum(0, keepdim=True))
        grad_logits.mul_(scale)

        grad_q = torch.zeros_like(q) if ctx.needs_input_grad[0] else None
        grad_k_pad = torch.zeros_like(k_pad) if ctx.needs_input_grad[1] else None
        grad_v_pad = torch.zeros_like(v_pad) if ctx.needs_input_grad[2] else None
        for idx, (di, dj) in enumerate(shifts):
            g = grad_logits[idx].unsqueeze(2)
            if grad_q is not None:
                grad_q.addcmul_(g, k_pad[..., di:di + H, dj:dj + W])
            if grad_k_pad is not None:
                grad_k_pad[..., di:di + H, dj:dj + W].addcmul_(g, q)
            if grad_v_pad is not None:
                grad_v_pad[..., di:di + H, dj:dj + W].addcmul_(attn[idx].unsqueeze(2), grad_out)
        crop = (Ellipsis, slice(pad, pad + H), slice(pad, pad + W))
        grad_k = grad_k_pad[crop] if grad_k_pad is not None else None
        grad_v = grad_v_pad[crop] if grad_v_pad is not None else None
        return grad_q, grad_k, grad_v, None, None, None


@register('msda', 'fast')
def dilated_local_attention_fast(q, k, v, kernel_size, dilation, scale):
    return _DilatedLocalAttention.apply(q, k, v, kernel_size, dilation, scale)
