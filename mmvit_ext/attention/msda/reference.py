"""MSDA's reference form: the unfold formulation of the paper's code (k*k copies of K and V, a
(1 x d)(d x k*k) product per pixel). Slow and memory hungry; the other forms are checked
against it."""
import torch
import torch.nn.functional as F

from ..forms import register

__all__ = ['dilated_local_attention_reference']


@register('msda', 'reference')
def dilated_local_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                      kernel_size: int, dilation: int,
                                      scale: float) -> torch.Tensor:
    """``(B, heads, head_dim, H, W)`` in and out."""
    B, h, d, H, W = q.shape
    K = kernel_size * kernel_size
    pad = dilation * (kernel_size - 1) // 2

    def unfold(x):  # (B, h, d, H, W) -> (B, h, H*W, K, d)
        cols = F.unfold(x.reshape(B, h * d, H, W), kernel_size, dilation=dilation, padding=pad,
                        stride=1)
        return cols.reshape(B, h, d, K, H * W).permute(0, 1, 4, 3, 2)

    k_unf, v_unf = unfold(k), unfold(v)
    q_tok = q.reshape(B, h, d, H * W).permute(0, 1, 3, 2).unsqueeze(-2)
    attn = (q_tok @ k_unf.transpose(-2, -1)) * scale  # (B, h, N, 1, K)
    attn = attn.softmax(dim=-1)
    out = (attn @ v_unf).squeeze(-2)  # (B, h, N, d)
    return out.permute(0, 1, 3, 2).reshape(B, h, d, H, W)
