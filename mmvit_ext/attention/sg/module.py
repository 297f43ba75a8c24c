"""SG-Former's three attention blocks: hybrid-scale (H), self-guided (G) and full (F).

Every block of stages 1-3 alternates H and G. The H block returns a *significance map* S (how much
attention each token receives, from its global and its local heads); the next G block sorts the
tokens by S and merges them into fewer key/value tokens, finer where S is high. All three add a
LePE-style term ``dwconv3x3(linear(x))`` before the output projection.

Each block is an operator with a ``fast`` form (this module's code, whose pieces choose their
own forms) and a ``reference`` form that follows the official computation step by step
(:mod:`.reference`).
"""
import numbers
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigValueError
from ..forms import dispatch, register
from ..shapes import ceil_div, crop_hw, pad_hw
from .global_half import global_attention_with_significance
from .merge import merge_sorted_tokens, significance_order
from .tokens import conv_on_tokens, heads, merge_heads, split_kv
from .window import window_attention, window_significance

__all__ = ['HybridScaleAttention', 'SelfGuidedAttention', 'FullAttention']


class _LePEMixin:
    """``dwconv3x3(linear(x))`` on the token grid, added before ``proj``."""

    def _init_lepe(self, dims):
        self.lepe_linear = nn.Linear(dims, dims)
        self.lepe_conv = nn.Conv2d(dims, dims, 3, padding=1, groups=dims)

    def lepe(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        return conv_on_tokens(self.lepe_conv, self.lepe_linear(x), hw)


def _check_dims(embed_dims, num_heads, even_heads):
    if embed_dims % num_heads:
        raise ConfigValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                               f'({num_heads})')
    if even_heads and num_heads % 2:
        raise ConfigValueError(f'SG-Former splits the heads of stages 1-3 in two halves; '
                               f'num_heads must be even, got {num_heads}')


def _whole(name: str, value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not low <= value <= high:
        raise ConfigValueError(f'{name}={value!r}: {what}, a whole number in {low}..{high}')
    return int(value)


class HybridScaleAttention(_LePEMixin, nn.Module):
    """H block: half the heads attend globally to a stride-``sr`` reduced map, the other half
    within ``window_size`` windows. Returns the output and the significance map ``S`` (B, H, W),
    detached.

    ``S = nearest_up(mean_{heads,queries} A_global) + mean_{heads,window queries} A_local``, taken
    from the same attention probabilities that produce the output (no second pass).
    """

    def __init__(self, embed_dims: int, num_heads: int, sr_ratio: int, window_size: int = 7,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        _check_dims(embed_dims, num_heads, even_heads=True)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.sr_ratio = _whole('sr_ratio', sr_ratio, 1, 64, 'the stride of the reduced map')
        self.window_size = _whole('window_size', window_size, 1, 64,
                                  'the side of the local windows in tokens (7 in the paper)')
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        half = embed_dims // 2
        self.global_q = nn.Linear(embed_dims, half, bias=qkv_bias)
        self.global_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.local_q = nn.Linear(embed_dims, half, bias=qkv_bias)
        self.local_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.sr = nn.Conv2d(embed_dims, embed_dims, self.sr_ratio, self.sr_ratio)
        self.sr_norm = nn.LayerNorm(embed_dims)
        self.act = nn.GELU()
        self.attn_drop = nn.Dropout(attn_drop)
        self._init_lepe(embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def reduce(self, x: torch.Tensor, hw: Tuple[int, int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Stride-``sr`` tokens ``GELU(LN(conv_sr(x)))``; a border cell is zero-filled, like any
        strided conv at a border (no cell is made only of padding)."""
        B, N, C = x.shape
        H, W = hw
        r = self.sr_ratio
        Hs, Ws = ceil_div(H, r), ceil_div(W, r)
        t = pad_hw(x.reshape(B, H, W, C), Hs * r, Ws * r, channels_last=True)
        t = conv_on_tokens(self.sr, t.reshape(B, -1, C), (Hs * r, Ws * r))
        return self.act(self.sr_norm(t)), (Hs, Ws)

    def fp32_routing_inputs(self, x, hw):
        """fp32 queries/keys of both halves, without gradient: the significance inputs under
        autocast (the same projections the fp32 forward computes)."""
        hh = self.num_heads // 2
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            reduced, _ = self.reduce(x, hw)
            q1 = heads(self.global_q(x), hh)
            k1, _ = split_kv(self.global_kv(reduced), hh)
            q2 = heads(self.local_q(x), hh)
            k2, _ = split_kv(self.local_kv(x), hh)
        return q1, k1, q2, k2

    def forward(self, x: torch.Tensor, hw: Tuple[int, int],
                pad_extra: Tuple[int, int] = (0, 0)) -> Tuple[torch.Tensor, torch.Tensor]:
        return dispatch('sg.hybrid', self, x, hw, pad_extra)


@register('sg.hybrid', 'fast')
def hybrid_scale_attention(m: HybridScaleAttention, x, hw, pad_extra=(0, 0)):
    B, N, C = x.shape
    H, W = hw
    hh = m.num_heads // 2
    # global half: queries at full resolution, keys/values on the reduced map
    reduced, (Hs, Ws) = m.reduce(x, hw)
    q1 = heads(m.global_q(x), hh)
    k1, v1 = split_kv(m.global_kv(reduced), hh)
    # local half: windows at full resolution
    q2 = heads(m.local_q(x), hh)
    k2, v2 = split_kv(m.local_kv(x), hh)
    routing = None
    if q1.dtype != x.dtype:  # autocast lowered the projections: decide in fp32
        routing = m.fp32_routing_inputs(x, hw)
    o1, g = global_attention_with_significance(
        q1, k1, v1, m.scale, None if routing is None else routing[:2], m.attn_drop)
    o2, local_sig = window_attention(q2, k2, v2, hw, m.window_size, m.scale, pad_extra,
                                     m.attn_drop, with_significance=routing is None)
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        if routing is not None:
            local_sig = window_significance(routing[2], routing[3], hw, m.window_size, m.scale,
                                            pad_extra)
        g = g.reshape(B, Hs, 1, Ws, 1).expand(B, Hs, m.sr_ratio, Ws, m.sr_ratio)
        g = g.reshape(B, Hs * m.sr_ratio, Ws * m.sr_ratio)  # nearest upsampling
        significance = crop_hw(g, H, W, dim=1) + local_sig
    out = torch.cat([merge_heads(o1), merge_heads(o2)], dim=-1) + m.lepe(x, hw)
    return m.proj_drop(m.proj(out)), significance


class SelfGuidedAttention(_LePEMixin, nn.Module):
    """G block: every query attends to tokens merged along the significance order.

    The tokens are sorted by ``S`` (ascending) twice, in row-major and in column-major order (they
    differ only at ties, as in the official code), pooled by the same merge layers, and give the
    keys/values of the first (``row_kv``) and the second (``col_kv``) half of the heads.
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 merge_groups: Sequence[Tuple[float, int]],
                 qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        _check_dims(embed_dims, num_heads, even_heads=True)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.merge_groups = tuple((float(f), int(k)) for f, k in merge_groups)
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.row_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.col_kv = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.merges = nn.ModuleList(nn.Linear(k, 1) for _, k in self.merge_groups)
        self.attn_drop = attn_drop
        self._init_lepe(embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def sorted_sequences(self, x: torch.Tensor, hw: Tuple[int, int],
                         significance: torch.Tensor) -> torch.Tensor:
        """Row- and column-major tokens in ascending significance: ``(2, B, N, C)``."""
        B, N, C = x.shape
        H, W = hw
        x_col = x.reshape(B, H, W, C).transpose(1, 2).reshape(B, N, C)
        s_row = significance.reshape(B, N)
        s_col = significance.transpose(1, 2).reshape(B, N)
        order = significance_order(torch.stack([s_row, s_col]))  # (2, B, N)
        return torch.gather(torch.stack([x, x_col]), 2, order[..., None].expand(-1, -1, -1, C))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int],
                significance: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        if significance is None or significance.shape != (B, *hw):
            got = None if significance is None else tuple(significance.shape)
            raise ValueError(f'SelfGuidedAttention needs the significance map of the preceding '
                             f'hybrid-scale block, shaped {(B, *hw)}; got {got}')
        return dispatch('sg.guided', self, x, hw, significance)


@register('sg.guided', 'fast')
def self_guided_attention(m: SelfGuidedAttention, x, hw, significance):
    B, N, C = x.shape
    hh = m.num_heads // 2
    q = heads(m.q(x), m.num_heads)
    seqs = m.sorted_sequences(x, hw, significance).flatten(0, 1)  # (2B, N, C)
    merged = merge_sorted_tokens(seqs, m.merge_groups, m.merges)
    k1, v1 = split_kv(m.row_kv(merged[:B]), hh)
    k2, v2 = split_kv(m.col_kv(merged[B:]), hh)
    k, v = torch.cat([k1, k2], dim=1), torch.cat([v1, v2], dim=1)
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=m.attn_drop if m.training else 0., scale=m.scale)
    out = merge_heads(out) + m.lepe(x, hw)
    return m.proj_drop(m.proj(out))


class FullAttention(_LePEMixin, nn.Module):
    """F block (stage 4): multi-head attention over all tokens, fused ``kv`` (K first)."""

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        _check_dims(embed_dims, num_heads, even_heads=False)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims, bias=qkv_bias)
        self.attn_drop = attn_drop
        self._init_lepe(embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        return dispatch('sg.full', self, x, hw)


@register('sg.full', 'fast')
def full_attention(m: FullAttention, x, hw):
    q = heads(m.q(x), m.num_heads)
    k, v = split_kv(m.kv(x), m.num_heads)
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=m.attn_drop if m.training else 0., scale=m.scale)
    return m.proj_drop(m.proj(merge_heads(out) + m.lepe(x, hw)))
