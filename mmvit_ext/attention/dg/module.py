"""The DG-Attention module (DGT, Liu et al., IJCAI 2022, arXiv 2203.03937)."""
import numbers
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigValueError
from .grouped import grouped_attention
from .routing import DGRouting, group_count, route, routing_precision

__all__ = ['DynamicGroupAttention']


def _whole(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        none = ' (or None)' if allow_none else ''
        raise ConfigValueError(f'DynamicGroupAttention {name}={value!r}: a whole number >= '
                               f'{low}{none}')
    return int(value)


class DynamicGroupAttention(nn.Module):
    """Multi-head DG-Attention on ``(B, N, C)`` tokens.

    Args:
        embed_dims, num_heads: width and heads; q/k/v from one ``qkv`` Linear ((3, heads, d)
            output order), output through ``proj``.
        num_groups: query groups per image and head (capped at N).
        topk: keys per group (capped at N); ``None`` = all keys (global attention).
        kmeans_iters: Lloyd iterations after the deterministic initial assignment.
        chunk_size: queries per chunk in the fast form (a group's last chunk is padded); None
            chooses it from the token and group counts.
        keep_routing: keep the last forward's :class:`DGRouting` (heads of image 0) in
            ``last_routing``, for visualisation.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_groups: int = 8,
                 topk: Optional[int] = 64,
                 kmeans_iters: int = 3,
                 chunk_size: Optional[int] = None,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 keep_routing: bool = False):
        super().__init__()
        if embed_dims % num_heads:
            raise ConfigValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                                   f'({num_heads})')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.num_groups = _whole('num_groups', num_groups, 1)
        self.topk = _whole('topk', topk, 1, allow_none=True)
        self.kmeans_iters = _whole('kmeans_iters', kmeans_iters, 0)
        self.chunk_size = _whole('chunk_size', chunk_size, 1, allow_none=True)
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.keep_routing = keep_routing
        self.last_routing: Optional[DGRouting] = None
        self.exact_attention_flops = 0  # q k^T + attn v MACs of the last forward (see analysis)

    def _qkv(self, x):
        B, N, C = x.shape
        d = C // self.num_heads
        # one copy into (3, B, heads, N, d): the routing and the chunk gathers read q, k and v
        # by token rows, and on the strided view each of them made its own copy (five of q)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, d).permute(2, 0, 3, 1, 4)
        return list(qkv.contiguous().reshape(3, B * self.num_heads, N, d).unbind(0))

    def _routing_qk(self, x, q, k):
        """The queries and keys to route with: ``q``, ``k`` themselves in fp32 mode; under
        autocast (or any projection to a lower precision than ``x``) the same projection redone
        in fp32, without gradient."""
        if q.dtype == x.dtype:
            return q, k
        B, N, C = x.shape
        with torch.no_grad(), routing_precision(x.device.type):
            weight = self.qkv.weight[:2 * C].float()
            bias = None if self.qkv.bias is None else self.qkv.bias[:2 * C].float()
            qk = F.linear(x.float(), weight, bias).reshape(B, N, 2, self.num_heads, -1)
            qk = qk.permute(2, 0, 3, 1, 4).contiguous().reshape(2, B * self.num_heads, N, -1)
        return qk[0], qk[1]

    def routing(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> DGRouting:
        """Groups (k-means of the queries) and their keys (top-k), no gradient, in fp32."""
        N = q.shape[1]
        if not (group_count(self.num_groups, N) == 1 and (self.topk is None or self.topk >= N)):
            q, k = self._routing_qk(x, q, k)  # nothing to decide otherwise: no fp32 projection
        return route(q, k, self.num_groups, self.topk, self.kmeans_iters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        routing = self.routing(x, q, k)
        out = grouped_attention(q, k, v, routing, self.scale, self.chunk_size,
                                self.attn_drop if self.training else 0.)
        if self.keep_routing:
            self.last_routing = DGRouting(*(t[:self.num_heads].detach() for t in routing))
        self.exact_attention_flops = 2 * out.shape[0] * N * routing.key_index.shape[-1] * (
            C // self.num_heads)
        # no -1: inferring it divides by the symbolic N under torch.export (slow to simplify)
        out = out.reshape(B, self.num_heads, N, C // self.num_heads).transpose(1, 2).reshape(
            B, N, C)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (f'{self.embed_dims}, heads={self.num_heads}, groups={self.num_groups}, '
                f'topk={self.topk}, kmeans_iters={self.kmeans_iters}')
