"""Size arithmetic and padding shared by the operators and the backbones.

``zero_pad`` (and ``pad_hw``) and ``crop_hw`` are operators with two forms: the fast one skips
the pad (or takes a view) when the size already fits; the traceable one always pads (by zero
where nothing is needed) and crops with ``index_select``, so that a traced graph holds no test
of a size, which would be frozen into it at the example's value.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from .forms import dispatch, register

__all__ = ['ceil_div', 'one_hot', 'accumulation_dtype', 'autocast_dtype', 'window_key_mask',
           'zero_pad', 'pad_hw', 'crop_hw']


def ceil_div(a, b):
    """``ceil(a / b)`` for sizes ``a >= 0``, ``b > 0``, with non-negative operands only: traced into
    ONNX, ``-(-a // b)`` becomes an integer division of a negative number, which ONNX rounds
    toward zero (a wrong size at every shape but the traced one)."""
    return (a + b - 1) // b


def one_hot(index: torch.Tensor, classes: int) -> torch.Tensor:
    """``F.one_hot(index, classes)`` (int64) as a comparison with ``arange``: the same tensor,
    and torch 2.1's dynamo traces it (its fake tensors refused ``one_hot``)."""
    return (index.unsqueeze(-1) == torch.arange(classes, device=index.device)).long()


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where sums and softmaxes run: half types in fp32, fp32 / fp64 as they are."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype active for ``device_type``, None when autocast is off."""
    try:
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4: per-device functions
        if device_type == 'cpu':
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def window_key_mask(H, W, Hp, Wp, wh: int, ww: int, device) -> torch.Tensor:
    """``(windows, wh * ww)`` bool: which tokens of the row-major ``wh x ww`` windows of an
    ``H x W`` map padded to ``Hp x Wp`` are real. Built from comparisons, so traced sizes stay
    symbolic."""
    rows = torch.arange(Hp, device=device) < H
    cols = torch.arange(Wp, device=device) < W
    valid = (rows[:, None] & cols[None]).reshape(Hp // wh, wh, Wp // ww, ww).permute(0, 2, 1, 3)
    return valid.reshape(-1, wh * ww)


def zero_pad(x: torch.Tensor, pads) -> torch.Tensor:
    """``F.pad(x, pads)`` (zeros; ``pads`` as ``F.pad`` takes them, last dim first)."""
    return dispatch('zero_pad', x, tuple(pads))


@register('zero_pad', 'fast')
def _pad_when_needed(x, pads):
    return F.pad(x, pads) if any(pads) else x


@register('zero_pad', 'traceable')
def _pad_always(x, pads):
    return F.pad(x, pads)


def pad_hw(x: torch.Tensor, Hp, Wp, channels_last: bool = False) -> torch.Tensor:
    """``x`` zero-padded at the bottom and right to ``Hp x Wp`` (``(..., H, W)`` maps, or
    ``(..., H, W, C)`` with ``channels_last``)."""
    H, W = (x.shape[-3], x.shape[-2]) if channels_last else (x.shape[-2], x.shape[-1])
    pads = (0, Wp - W, 0, Hp - H)
    return zero_pad(x, (0, 0) + pads if channels_last else pads)


def crop_hw(t: torch.Tensor, H, W, dim: int) -> torch.Tensor:
    """``t`` cropped to ``H x W`` along dims ``dim, dim + 1``."""
    return dispatch('crop_hw', t, H, W, dim)


@register('crop_hw', 'fast')
def _crop_by_slicing(t, H, W, dim):
    return t[(slice(None), ) * dim + (slice(None, H), slice(None, W))]


@register('crop_hw', 'traceable')
def _crop_by_index_select(t, H, W, dim):
    # two index_selects make fresh contiguous tensors: a slice would make symbolic shapes test
    # whether the crop is a no-op (it is contiguous only when nothing was padded), and
    # torch.export would freeze that test into the program
    t = t.index_select(dim, torch.arange(H, device=t.device))
    return t.index_select(dim + 1, torch.arange(W, device=t.device))
