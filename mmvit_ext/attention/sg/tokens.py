"""Token layouts shared by SG-Former's attentions: ``(B, N, C)`` tokens in row-major order over
``hw = (H, W)``, heads split from and merged into channels."""
from typing import Tuple

import torch
import torch.nn as nn

__all__ = ['heads', 'split_kv', 'merge_heads', 'conv_on_tokens']


def heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, N, h*d)`` -> ``(B, h, N, d)`` (channels head-major, as in the official layout)."""
    B, N, C = t.shape
    return t.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)


def split_kv(kv: torch.Tensor, num_heads: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fused ``K|V`` projection output -> K, V as ``(B, h, N, d)``. K comes first."""
    k, v = kv.chunk(2, dim=-1)
    return heads(k, num_heads), heads(v, num_heads)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    B, h, N, d = t.shape
    return t.transpose(1, 2).reshape(B, N, h * d)


def conv_on_tokens(conv: nn.Module, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """Apply a conv to ``(B, N, C)`` row-major tokens and return tokens.

    The tokens are viewed as a channels-last NCHW tensor (no copy), which the CPU/GPU conv kernels
    take natively: for depthwise convs about 5x faster than transposing to contiguous NCHW.
    """
    B, N, C = x.shape
    y = conv(x.reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).reshape(B, -1, y.shape[1])
