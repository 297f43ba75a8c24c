"""The MSDA module and the entry point of its sliding-window core."""
import numbers
from typing import Sequence, Tuple

import torch
import torch.nn as nn

from ...errors import ConfigValueError
from ..forms import dispatch

__all__ = ['MultiScaleDilatedAttention', 'dilated_local_attention', 'offsets', 'check_qkv']


def offsets(kernel_size: int, dilation: int) -> Tuple[Tuple[int, int], ...]:
    """Start indices (into the map padded by ``dilation * (k - 1) / 2``) of the k*k shifted
    views, row-major like unfold."""
    return tuple((i * dilation, j * dilation) for i in range(kernel_size)
                 for j in range(kernel_size))


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int,
              dilation: int) -> None:
    if q.dim() != 5 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            'dilated local attention expects q, k, v of one shape '
            f'(B, heads, head_dim, H, W); got {tuple(q.shape)}, '
            f'{tuple(k.shape)}, {tuple(v.shape)}')
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f'kernel_size must be odd and positive, got {kernel_size}')
    if dilation < 1:
        raise ValueError(f'dilation must be >= 1, got {dilation}')


def dilated_local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            kernel_size: int, dilation: int, scale: float) -> torch.Tensor:
    """Sliding-window dilated attention with zero-padded borders, in the form
    :mod:`mmvit_ext.attention.forms` chooses. Shapes: ``(B, heads, head_dim, H, W)`` in and
    out."""
    check_qkv(q, k, v, kernel_size, dilation)
    return dispatch('msda', q, k, v, kernel_size, dilation, scale)


def _check_arguments(embed_dims, num_heads, kernel_size, dilations, attn_drop) -> tuple:
    """The module's arguments, each refused in one line naming it and what is allowed."""
    if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence) \
            or not dilations:
        raise ConfigValueError(f'dilations={dilations!r}: give one whole-number dilation >= 1 '
                               'per head group, e.g. (1, 2, 3)')
    bad = [r for r in dilations
           if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1]
    if bad:
        raise ConfigValueError(f'dilations={tuple(dilations)!r}: every dilation must be a whole '
                               f'number >= 1 (got {bad[0]!r}); e.g. (1, 2, 3)')
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral) \
            or kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigValueError(f'kernel_size={kernel_size!r}: MSDA windows are centred on the '
                               'query, so the size must be an odd whole number >= 1 (3 in the '
                               'paper)')
    if embed_dims % num_heads != 0:
        raise ConfigValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                               f'({num_heads})')
    if num_heads % len(dilations) != 0:
        raise ConfigValueError(
            f'num_heads ({num_heads}) must be a multiple of the number of dilations '
            f'({len(dilations)}: {tuple(dilations)}); every dilation gets the same number of '
            'heads')
    if attn_drop > 0:
        raise ConfigValueError('attn_drop > 0 is not supported by MSDA (the fast kernel has no '
                               'dropout on attention weights; the paper uses 0)')
    return tuple(int(r) for r in dilations)


class MultiScaleDilatedAttention(nn.Module):
    """MSDA on channels-last tokens ``(B, H, W, C)``.

    The fused ``qkv`` projection orders output channels ``[Q | K | V]`` with heads contiguous in
    each, and head j uses ``dilations[j // (num_heads // len(dilations))]``, as in the official
    model. Torch alone is enough to use it::

        from mmvit_ext.attention import MultiScaleDilatedAttention
        attn = MultiScaleDilatedAttention(64, num_heads=4, dilations=(1, 2))
        y = attn(x)  # x: (B, H, W, 64), any H and W

    Args:
        embed_dims: channels C.
        num_heads: heads; must be a multiple of ``len(dilations)``.
        kernel_size: window size k (odd).
        dilations: one dilation per head group (whole numbers >= 1).
        qkv_bias: bias of the qkv projection.
        qk_scale: logit scale; ``head_dim ** -0.5`` when None.
        attn_drop: dropout on the attention weights; must be 0 (the paper uses 0).
        proj_drop: dropout after the output projection.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 3),
                 qkv_bias: bool = True,
                 qk_scale: float = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        self.dilations = _check_arguments(embed_dims, num_heads, kernel_size, dilations,
                                          attn_drop)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.kernel_size = int(kernel_size)
        self.scale = qk_scale or self.head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        h, d = self.num_heads, self.head_dims
        # (B, H, W, 3C) -> (3, B, heads, d, H, W): channels-first per head, so
        # the shifted views are plain 2-D slices.
        qkv = self.qkv(x).reshape(B, H, W, 3, h, d).permute(3, 0, 4, 5, 1, 2)
        q, k, v = qkv[0], qkv[1], qkv[2]
        heads_per_group = h // len(self.dilations)
        outs = []
        for g, r in enumerate(self.dilations):
            sl = slice(g * heads_per_group, (g + 1) * heads_per_group)
            outs.append(dilated_local_attention(q[:, sl], k[:, sl], v[:, sl], self.kernel_size,
                                                r, self.scale))
        # Built out of place (the official code writes into its input, which breaks fp32 backward).
        out = torch.cat(outs, dim=1)  # (B, heads, d, H, W)
        out = out.permute(0, 3, 4, 1, 2).reshape(B, H, W, C)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, dilations={self.dilations}')
