"""The local half of SG-Former's hybrid-scale attention: non-overlapping ``window x window``
attention with the attention each key receives (its share of the significance map).

The windows pad the map to a multiple of the window; padded tokens are masked out as keys and
left out of the significance averages, so valid outputs do not depend on the padding
(``pad_extra`` adds more padding to check this). Forms: ``fast`` pads only when the size needs
it, ``traceable`` always (by zero where nothing is needed); the reference is a loop over
windows (:mod:`.reference`).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..forms import dispatch, register
from ..shapes import ceil_div, crop_hw, window_key_mask

__all__ = ['window_attention', 'window_significance']


def _window_logits(q, k, hw, window, scale, pad_extra, static):
    """Masked logits ``(B, h, nW, L, L)`` of the ``window x window`` windows, the validity mask
    ``(nW, L)`` (None when nothing is padded), the padded geometry, and the windows function."""
    B, h, N, d = q.shape
    H, W = hw
    ws = window
    Hp = ceil_div(H, ws) * ws + pad_extra[0] * ws
    Wp = ceil_div(W, ws) * ws + pad_extra[1] * ws
    nh, nw = Hp // ws, Wp // ws
    L = ws * ws
    padded = static or (Hp, Wp) != (H, W)

    def windows(t):  # (B, h, N, d) -> (B, h, nW, L, d), row-major windows
        t = t.reshape(B * h, H, W, t.shape[-1])
        if padded:
            t = F.pad(t, (0, 0, 0, Wp - W, 0, Hp - H))
        t = t.reshape(B * h, nh, ws, nw, ws, -1).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(B, h, nh * nw, L, -1)

    logits = (windows(q) * scale) @ windows(k).transpose(-2, -1)  # (B, h, nW, L, L)
    valid = None
    if padded:
        valid = window_key_mask(H, W, Hp, Wp, ws, ws, q.device)  # (nW, L)
        # finite fill: a window of padding only gets a uniform softmax, never NaN
        logits = logits.masked_fill(~valid[:, None, :], torch.finfo(logits.dtype).min)
    return logits, valid, (Hp, Wp, nh, nw, ws), windows


@torch.no_grad()
def _received_by_window_keys(attn, valid, geometry, hw):
    """Per key, the attention it gets averaged over heads and the real queries of its window."""
    B = attn.shape[0]
    Hp, Wp, nh, nw, ws = geometry
    a = attn.detach().mean(dim=1)  # (B, nW, Lq, Lk): mean over heads
    if valid is None:
        received = a.mean(dim=2)
    else:
        qmask = valid.to(a.dtype)  # (nW, L)
        received = (a * qmask[None, :, :, None]).sum(2)
        received = received / qmask.sum(1).clamp(min=1)[None, :, None]
    received = received.reshape(B, nh, nw, ws, ws).permute(0, 1, 3, 2, 4)
    return crop_hw(received.reshape(B, Hp, Wp), hw[0], hw[1], dim=1)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: Tuple[int, int],
                     window: int, scale: float, pad_extra: Tuple[int, int] = (0, 0),
                     attn_drop: Optional[nn.Module] = None, with_significance: bool = True
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Window attention and the attention each key receives, in the chosen form.

    Args:
        q, k, v: ``(B, h, N, d)`` with ``N = H * W``.
        pad_extra: extra windows of padding (rows, cols) beyond what H, W need; for tests.
        attn_drop: dropout on the probabilities of the output (the returned map is taken before).
        with_significance: False returns None for the map (it is computed elsewhere).
    Returns:
        out ``(B, h, N, d)``; received ``(B, H, W)``: per key, the attention it gets averaged over
        heads and over the real queries of its window (0 for nothing), detached.
    """
    return dispatch('sg.window', q, k, v, hw, window, scale, pad_extra, attn_drop,
                    with_significance)


def _window_attention(q, k, v, hw, window, scale, pad_extra, attn_drop, with_significance,
                      static):
    B, h, N, d = q.shape
    H, W = hw
    logits, valid, geometry, windows = _window_logits(q, k, hw, window, scale, pad_extra, static)
    Hp, Wp, nh, nw, ws = geometry
    attn = logits.softmax(dim=-1)
    out = (attn if attn_drop is None else attn_drop(attn)) @ windows(v)  # (B, h, nW, L, dv)
    dv = v.shape[-1]
    out = out.reshape(B * h, nh, nw, ws, ws, dv).permute(0, 1, 3, 2, 4, 5)
    out = crop_hw(out.reshape(B, h, Hp, Wp, dv), H, W, dim=2).reshape(B, h, N, dv)
    received = _received_by_window_keys(attn, valid, geometry, hw) if with_significance else None
    return out, received


@register('sg.window', 'fast')
def window_attention_fast(q, k, v, hw, window, scale, pad_extra=(0, 0), attn_drop=None,
                          with_significance=True):
    return _window_attention(q, k, v, hw, window, scale, pad_extra, attn_drop,
                             with_significance, static=False)


@register('sg.window', 'traceable')
def window_attention_traceable(q, k, v, hw, window, scale, pad_extra=(0, 0), attn_drop=None,
                               with_significance=True):
    return _window_attention(q, k, v, hw, window, scale, pad_extra, attn_drop,
                             with_significance, static=True)


@torch.no_grad()
def window_significance(q: torch.Tensor, k: torch.Tensor, hw: Tuple[int, int], window: int,
                        scale: float, pad_extra: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The ``received`` map of :func:`window_attention` alone (same ops, so the same numbers),
    autocast off: in the precision of ``q`` and ``k``."""
    with torch.autocast(device_type=q.device.type, enabled=False):
        return window_attention(q, k, k[..., :0], hw, window, scale, pad_extra)[1]
