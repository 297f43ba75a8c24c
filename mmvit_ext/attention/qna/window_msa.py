"""QnA-ViT's multi-head self-attention in ``ws x ws`` windows (stages 3-4), on NHWC maps, with
its fast and traceable forms (the reference is in :mod:`.reference`)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigValueError
from ..forms import dispatch, register
from ..shapes import ceil_div, crop_hw, window_key_mask

__all__ = ['WindowMSA']


class WindowMSA(nn.Module):
    """Windowed MSA on ``(B, H, W, C)`` maps.

    ``qkv`` (no bias) orders its 3C outputs as Swin/timm do, ``(3, heads, head_dim)``; the
    official ``to_qkv`` interleaves them per head (head i owns columns ``[3di, 3di + 3d)``) and
    the converter reorders them. ``proj`` (official ``to_out``) has no bias either; ``rpe_bias``
    is Swin's relative position bias table ``((2ws - 1)^2, heads)`` with Swin's index.

    ``mode='window'`` (official): windows of ``ws``; a map that is not a multiple of ``ws`` is
    padded and the padded tokens are masked out as keys. At 224 input every stage-3/4 map is one
    window. ``mode='global'``: one window over the whole map, relative offsets beyond the table's
    ``+-(ws - 1)`` clamped to its edge; identical to ``'window'`` when the map fits one window.
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int, mode: str = 'window'):
        super().__init__()
        if embed_dims % num_heads:
            raise ConfigValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                                   f'({num_heads})')
        if mode not in ('window', 'global'):
            raise ConfigValueError(f"WindowMSA mode must be 'window' or 'global', got {mode!r}")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or \
                not 1 <= window_size <= 256:
            raise ConfigValueError(f'window_size={window_size!r}: a whole number of tokens in '
                                   '1..256 (14 and 7 in QnA-ViT)')
        self.embed_dims, self.num_heads, self.window_size, self.mode = (
            embed_dims, num_heads, window_size, mode)
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=False)
        self.proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.rpe_bias = nn.Parameter(torch.zeros((2 * window_size - 1)**2, num_heads))
        self._table_index = {}  # (h, w, device) -> flat (h*w * h*w) index into rpe_bias

    def relative_bias(self, h: int, w: int, cached: bool = True) -> torch.Tensor:
        """``(heads, h*w, h*w)`` bias for an ``h x w`` window (offsets clamped to the table);
        ``cached``: keep the index per window shape (not for traced sizes).

        The lookup is an embedding (not ``rpe_bias[index]``): both gather the same numbers, but
        the backward of advanced indexing accumulates the many duplicate indices serially on
        CUDA (a 25x42 global window reads a 13x13 table 1.1 million times), while the embedding
        backward reduces sorted segments in parallel, deterministically.
        """
        if not cached:
            index = self._offset_index(h, w, self.rpe_bias.device)
        else:
            key = (h, w, self.rpe_bias.device)
            if key not in self._table_index:  # the index depends on the window shape only
                self._table_index[key] = self._offset_index(h, w, self.rpe_bias.device)
            index = self._table_index[key]
        L = h * w
        bias = F.embedding(index, self.rpe_bias)  # (L*L, heads)
        return bias.t().contiguous().view(self.num_heads, L, L)  # SDPA kernels want stride 1

    def _offset_index(self, h, w, device):
        ws = self.window_size
        ys = torch.arange(h, device=device)[:, None].expand(h, w).reshape(-1)
        xs = torch.arange(w, device=device)[None, :].expand(h, w).reshape(-1)
        dy = (ys[:, None] - ys[None]).clamp(-(ws - 1), ws - 1) + ws - 1
        dx = (xs[:, None] - xs[None]).clamp(-(ws - 1), ws - 1) + ws - 1
        return (dy * (2 * ws - 1) + dx).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dispatch('qna.window_msa', self, x)

    def extra_repr(self) -> str:
        return (f'{self.embed_dims}, heads={self.num_heads}, window_size={self.window_size}, '
                f'mode={self.mode}')


def _window_msa(m: WindowMSA, x: torch.Tensor, static: bool) -> torch.Tensor:
    """``static``: the traceable form (always padded, the index built from the sizes, a copy of
    known layout), so that no size test is frozen into a traced graph."""
    B, H, W, C = x.shape
    heads, d = m.num_heads, C // m.num_heads
    if m.mode == 'global':  # one window, the map itself: nothing to pad
        wh, ww, Hp, Wp, nh, nw = H, W, H, W, 1, 1
        padded = False
    else:
        wh = ww = m.window_size
        nh, nw = ceil_div(H, wh), ceil_div(W, ww)
        Hp, Wp = nh * wh, nw * ww
        padded = static or (Hp, Wp) != (H, W)
    if padded:
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    # explicit sizes, no -1: symbolic shapes (torch.export) then need no divisibility guard
    nwin, L = B * nh * nw, wh * ww
    t = x.reshape(B, nh, wh, nw, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(nwin, L, C)
    qkv = m.qkv(t).reshape(nwin, L, 3, heads, d).permute(2, 0, 3, 1, 4)
    mask = m.relative_bias(wh, ww, cached=not static)[None].to(x.dtype)  # (1, heads, L, L)
    if padded:
        # padded tokens are masked out as keys: (windows, heads, L, L), tiled over the batch
        valid = window_key_mask(H, W, Hp, Wp, wh, ww, x.device)[:, None, None]
        mask = mask.masked_fill(~valid, torch.finfo(x.dtype).min).repeat(B, 1, 1, 1)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
    out = out.transpose(1, 2)
    if static:  # a copy of known layout: no view-or-copy test on symbols
        out = out.clone(memory_format=torch.contiguous_format)
    out = m.proj(out.reshape(nwin, L, C))
    out = out.reshape(B, nh, nw, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
    return crop_hw(out, H, W, dim=1)


@register('qna.window_msa', 'fast')
def window_msa_fast(m, x):
    return _window_msa(m, x, static=False)


@register('qna.window_msa', 'traceable')
def window_msa_traceable(m, x):
    return _window_msa(m, x, static=True)
