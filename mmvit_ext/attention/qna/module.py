"""The QnA layer and the entry point of its aggregation."""
import math

import torch
import torch.nn as nn

from ...errors import ConfigValueError
from ..forms import dispatch

__all__ = ['QnAAttention', 'qna_attention', 'normalized_queries', 'lecun_normal_']


def normalized_queries(query: torch.Tensor, heads: int) -> torch.Tensor:
    """``(nq, F)`` learned queries -> ``(nq, heads, d)``, unit norm per head, divided by sqrt(d)."""
    nq, feats = query.shape
    d = feats // heads
    q = query.reshape(nq, heads, d)
    return q / (q.norm(dim=-1, keepdim=True) + 1e-6) / math.sqrt(d)


def lecun_normal_(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """JAX's ``lecun_normal``: a normal cut at +-2 std and rescaled so the std is sqrt(1/fan_in)
    (for weights of models trained in Flax)."""
    std = math.sqrt(1. / fan_in) / .87962566103423978
    with torch.no_grad():
        return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def qna_attention(x: torch.Tensor, query: torch.Tensor, key_weight: torch.Tensor,
                  value_weight: torch.Tensor, rpe_bias: torch.Tensor, attn_scale: torch.Tensor,
                  heads: int, kernel_size: int, stride: int = 1) -> torch.Tensor:
    """QnA aggregation (before the output projection), in the form
    :mod:`mmvit_ext.attention.forms` chooses.

    Args:
        x: ``(B, H, W, Din)`` (NHWC, the LayerNorm'ed block input).
        query: ``(nq, F)``; key_weight: ``(Din, F)`` (official in x out layout);
        value_weight: ``(F, Din)`` (a Linear weight); rpe_bias, attn_scale: ``(k*k, nq*heads)``,
            rows ``u*k + v`` (u = row offset), columns ``q*heads + head``.
    Returns:
        ``(B, H', W', F)`` with ``H' = ceil(H / stride)`` (padding ``(k - 1) // 2``).
    """
    return dispatch('qna', x, query, key_weight, value_weight, rpe_bias, attn_scale, heads,
                    kernel_size, stride)


class QnAAttention(nn.Module):
    """The QnA layer: ``to_out(qna_attention(x))`` on NHWC maps.

    Parameter names follow the official ``FusedKQnA`` (``query``, ``Wk`` as ``key_weight`` in the
    official in x out layout, ``to_v``, ``to_out``, ``rpe_bias``, ``attn_scale_weights`` as
    ``attn_scale``); none of the projections has a bias.
    """

    def __init__(self, in_dims: int, embed_dims: int, num_heads: int, kernel_size: int = 3,
                 stride: int = 1, num_queries: int = 2):
        super().__init__()
        for name, value in (('in_dims', in_dims), ('embed_dims', embed_dims),
                            ('num_heads', num_heads), ('kernel_size', kernel_size),
                            ('stride', stride), ('num_queries', num_queries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigValueError(f'QnAAttention {name}={value!r}: a whole number >= 1')
        if embed_dims % num_heads:
            raise ConfigValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                                   f'({num_heads})')
        if kernel_size % 2 == 0:
            raise ConfigValueError(f'QnA needs an odd kernel_size (windows centred on a '
                                   f'token), got {kernel_size}')
        self.in_dims, self.embed_dims, self.num_heads = in_dims, embed_dims, num_heads
        self.kernel_size, self.stride, self.num_queries = kernel_size, stride, num_queries
        self.query = nn.Parameter(torch.empty(num_queries, embed_dims))
        self.key_weight = nn.Parameter(torch.empty(in_dims, embed_dims))
        self.to_v = nn.Linear(in_dims, embed_dims, bias=False)
        self.to_out = nn.Linear(embed_dims, embed_dims, bias=False)
        self.rpe_bias = nn.Parameter(torch.empty(kernel_size**2, num_queries * num_heads))
        self.attn_scale = nn.Parameter(torch.empty(kernel_size**2, num_queries * num_heads))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """The official initialisation (Flax ``FusedKQnA`` as QnA-ViT configures it)."""
        d = self.embed_dims // self.num_heads
        # JAX truncated_normal over [-2, 2] (not variance-corrected), times sqrt(1 / d)
        nn.init.trunc_normal_(self.query, std=1., a=-2., b=2.).mul_(math.sqrt(1. / d))
        for w, fan_in in ((self.key_weight.T, self.in_dims), (self.to_v.weight, self.in_dims),
                          (self.to_out.weight, self.embed_dims)):
            lecun_normal_(w, fan_in)
        nn.init.zeros_(self.rpe_bias)  # QnAStage passes zeros as the position-embedding init
        nn.init.normal_(self.attn_scale, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = qna_attention(x, self.query, self.key_weight, self.to_v.weight, self.rpe_bias,
                            self.attn_scale, self.num_heads, self.kernel_size, self.stride)
        return self.to_out(out.to(x.dtype))

    def extra_repr(self) -> str:
        return (f'{self.in_dims} -> {self.embed_dims}, heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'queries={self.num_queries}')
