"""Plain multi-head self-attention over all tokens (DilateFormer stages 3-4)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigValueError
from .forms import dispatch, register

__all__ = ['GlobalAttention', 'global_attention_reference']


class GlobalAttention(nn.Module):
    """ViT attention on ``(B, N, C)`` tokens; fused ``qkv`` split as (3, heads, head_dim).

    The fast form is ``F.scaled_dot_product_attention`` (a fused kernel on CPU and GPU).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 qk_scale: float = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ConfigValueError(f'embed_dims ({embed_dims}) must be divisible by '
                                   f'num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = qk_scale or self.head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        x = dispatch('global', qkv[0], qkv[1], qkv[2], self.scale,
                     self.attn_drop if self.training else 0.)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


@register('global', 'fast')
def global_attention(q, k, v, scale, dropout_p=0.):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)


@register('global', 'reference')
def global_attention_reference(q, k, v, scale, dropout_p=0.):
    """Explicit ``softmax(q k^T) v`` (no dropout). ``(B, heads, N, d)``."""
    attn = (q @ k.transpose(-2, -1)) * scale
    return attn.softmax(dim=-1) @ v
