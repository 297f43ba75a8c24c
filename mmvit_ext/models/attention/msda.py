"""Multi-Scale Dilated Attention (MSDA), the attention of DilateFormer stages 1-2.

Every query attends to the k x k neighbours around it at dilation r; the heads are split into
``len(dilations)`` contiguous groups and group g uses ``dilations[g]``. Neighbours that fall outside
the map are *zero-padded keys/values*: they give logit 0 and value 0 but still take a share of the
softmax (the official model's semantics, kept so that official weights give the same features).

Two forms of the sliding-window core live here:

* :func:`dilated_local_attention_reference` -- the unfold formulation of the paper's code: k*k copies
  of K and V, a (1 x d)(d x k*k) matmul per pixel. Slow and memory hungry; kept for tests.
* :func:`dilated_local_attention` -- the form the model uses. It walks the k*k shifted views of a
  zero-padded K/V and accumulates, so no copy of K or V is made; its backward is written by hand and
  scatters the key/value gradients into one padded buffer in place (autograd on slices would
  allocate a full padded zero tensor per offset). While a tracer or exporter runs (TorchScript,
  ONNX, ``torch.export``, ``torch.compile``) the same shift-and-accumulate runs as plain ops
  instead, which every exporter understands and which follows the input size.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import accumulation_dtype, plain_path_required

__all__ = [
    'dilated_local_attention', 'dilated_local_attention_reference',
    'MultiScaleDilatedAttention'
]


def _offsets(kernel_size: int, dilation: int) -> Tuple[Tuple[int, int], ...]:
    """Start indices (into the padded map) of the k*k shifted views, row-major like unfold."""
    return tuple((i * dilation, j * dilation) for i in range(kernel_size)
                 for j in range(kernel_size))


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               kernel_size: int, dilation: int) -> None:
    if q.dim() != 5 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            'dilated local attention expects q, k, v of one shape '
            f'(B, heads, head_dim, H, W); got {tuple(q.shape)}, '
            f'{tuple(k.shape)}, {tuple(v.shape)}')
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f'kernel_size must be odd and positive, got {kernel_size}')
    if dilation < 1:
        raise ValueError(f'dilation must be >= 1, got {dilation}')


def dilated_local_attention_reference(q: torch.Tensor, k: torch.Tensor,
                                      v: torch.Tensor, kernel_size: int,
                                      dilation: int,
                                      scale: float) -> torch.Tensor:
    """Slow reference: the unfold formulation (k*k copies of K and V).

    Args:
        q, k, v: ``(B, heads, head_dim, H, W)``.
    Returns:
        ``(B, heads, head_dim, H, W)``.
    """
    _check_qkv(q, k, v, kernel_size, dilation)
    B, h, d, H, W = q.shape
    K = kernel_size * kernel_size
    pad = dilation * (kernel_size - 1) // 2

    def unfold(x):  # (B, h, d, H, W) -> (B, h, H*W, K, d)
        cols = F.unfold(
            x.reshape(B, h * d, H, W), kernel_size, dilation=dilation,
            padding=pad, stride=1)
        return cols.reshape(B, h, d, K, H * W).permute(0, 1, 4, 3, 2)

    k_unf, v_unf = unfold(k), unfold(v)
    q_tok = q.reshape(B, h, d, H * W).permute(0, 1, 3, 2).unsqueeze(-2)
    attn = (q_tok @ k_unf.transpose(-2, -1)) * scale  # (B, h, N, 1, K)
    attn = attn.softmax(dim=-1)
    out = (attn @ v_unf).squeeze(-2)  # (B, h, N, d)
    return out.permute(0, 1, 3, 2).reshape(B, h, d, H, W)


class _DilatedLocalAttention(torch.autograd.Function):
    """Shift-and-accumulate sliding-window attention with a hand-written backward."""

    @staticmethod
    def forward(ctx, q, k, v, kernel_size: int, dilation: int, scale: float):
        B, h, d, H, W = q.shape
        pad = dilation * (kernel_size - 1) // 2
        offsets = _offsets(kernel_size, dilation)
        q = q.contiguous()
        k_pad = F.pad(k, (pad, pad, pad, pad))
        v_pad = F.pad(v, (pad, pad, pad, pad))
        # Logits in (K, B, h, H, W): each offset's slab is contiguous.
        logits = q.new_empty((len(offsets), B, h, H, W))
        prod = torch.empty_like(q)
        for idx, (di, dj) in enumerate(offsets):
            torch.mul(q, k_pad[..., di:di + H, dj:dj + W], out=prod)
            torch.sum(prod, dim=2, out=logits[idx])
        # Softmax in fp32 for half inputs; the exp of logits of fp16 maps overflows easily.
        attn = torch.softmax(logits.to(accumulation_dtype(q.dtype)) * scale, dim=0).to(q.dtype)
        out = torch.zeros_like(q)
        for idx, (di, dj) in enumerate(offsets):
            out.addcmul_(attn[idx].unsqueeze(2), v_pad[..., di:di + H, dj:dj + W])
        ctx.save_for_backward(q, k_pad, v_pad, attn)
        ctx.geometry = (kernel_size, dilation, scale, pad)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k_pad, v_pad, attn = ctx.saved_tensors
        kernel_size, dilation, scale, pad = ctx.geometry
        H, W = q.shape[-2:]
        offsets = _offsets(kernel_size, dilation)
        grad_out = grad_out.contiguous()
        # d attn_p = <grad_out, v_p>
        grad_attn = torch.empty_like(attn)
        prod = torch.empty_like(q)
        for idx, (di, dj) in enumerate(offsets):
            torch.mul(grad_out, v_pad[..., di:di + H, dj:dj + W], out=prod)
            torch.sum(prod, dim=2, out=grad_attn[idx])
        # softmax backward, then the 1/sqrt(d) scale of the logits
        grad_logits = attn * (grad_attn - (attn * grad_attn).sum(0, keepdim=True))
        grad_logits.mul_(scale)

        grad_q = torch.zeros_like(q) if ctx.needs_input_grad[0] else None
        grad_k_pad = torch.zeros_like(k_pad) if ctx.needs_input_grad[1] else None
        grad_v_pad = torch.zeros_like(v_pad) if ctx.needs_input_grad[2] else None
        for idx, (di, dj) in enumerate(offsets):
            g = grad_logits[idx].unsqueeze(2)
            if grad_q is not None:
                grad_q.addcmul_(g, k_pad[..., di:di + H, dj:dj + W])
            if grad_k_pad is not None:
                grad_k_pad[..., di:di + H, dj:dj + W].addcmul_(g, q)
            if grad_v_pad is not None:
                grad_v_pad[..., di:di + H, dj:dj + W].addcmul_(
                    attn[idx].unsqueeze(2), grad_out)
        crop = (Ellipsis, slice(pad, pad + H), slice(pad, pad + W))
        grad_k = grad_k_pad[crop] if grad_k_pad is not None else None
        grad_v = grad_v_pad[crop] if grad_v_pad is not None else None
        return grad_q, grad_k, grad_v, None, None, None


def dilated_local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            kernel_size: int, dilation: int,
                            scale: float) -> torch.Tensor:
    """Fast sliding-window dilated attention with zero-padded borders.

    Same result as :func:`dilated_local_attention_reference` without materialising the k*k
    copies of K and V. Shapes: ``(B, heads, head_dim, H, W)`` in and out.
    """
    _check_qkv(q, k, v, kernel_size, dilation)
    if plain_path_required():
        return _dilated_local_attention_plain(q, k, v, kernel_size, dilation, scale)
    return _DilatedLocalAttention.apply(q, k, v, kernel_size, dilation, scale)


def _dilated_local_attention_plain(q, k, v, kernel_size, dilation, scale):
    """The forward of :class:`_DilatedLocalAttention` in out-of-place standard ops (for tracers
    and exporters; autograd differentiates it)."""
    H, W = q.shape[-2:]
    pad = dilation * (kernel_size - 1) // 2
    k_pad = F.pad(k, (pad, pad, pad, pad))
    v_pad = F.pad(v, (pad, pad, pad, pad))
    offsets = _offsets(kernel_size, dilation)
    logits = torch.stack([(q * k_pad[..., di:di + H, dj:dj + W]).sum(2) for di, dj in offsets])
    attn = torch.softmax(logits.to(accumulation_dtype(q.dtype)) * scale, dim=0).to(q.dtype)
    out = attn[0].unsqueeze(2) * v_pad[..., offsets[0][0]:offsets[0][0] + H,
                                       offsets[0][1]:offsets[0][1] + W]
    for idx, (di, dj) in enumerate(offsets[1:], 1):
        out = out + attn[idx].unsqueeze(2) * v_pad[..., di:di + H, dj:dj + W]
    return out


class MultiScaleDilatedAttention(nn.Module):
    """MSDA on channels-last tokens ``(B, H, W, C)``.

    The fused ``qkv`` projection orders output channels ``[Q | K | V]`` with heads contiguous in each,
    and head j uses ``dilations[j // (num_heads // len(dilations))]``, as in the official model.

    Args:
        embed_dims: channels C.
        num_heads: heads; must be a multiple of ``len(dilations)``.
        kernel_size: window size k (odd).
        dilations: one dilation per head group.
        qkv_bias: bias of the qkv projection.
        qk_scale: logit scale; ``head_dim ** -0.5`` when None.
        attn_drop: dropout on the attention weights. Only supported by the reference form,
            so it must be 0 (the paper uses 0).
        proj_drop: dropout after the output projection.
        use_reference: run the slow unfold form (for tests and benchmarks).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 3),
                 qkv_bias: bool = True,
                 qk_scale: float = None,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 use_reference: bool = False):
        super().__init__()
        dilations = tuple(int(r) for r in dilations)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        if num_heads % len(dilations) != 0:
            raise ValueError(
                f'num_heads ({num_heads}) must be a multiple of the number of '
                f'dilations ({len(dilations)}: {dilations}); every dilation '
                'gets the same number of heads')
        if attn_drop > 0:
            raise ValueError('attn_drop > 0 is not supported by MSDA (the fast kernel '
                             'has no dropout on attention weights; the paper uses 0)')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.kernel_size = kernel_size
        self.dilations = dilations
        self.scale = qk_scale or self.head_dims**-0.5
        self.use_reference = use_reference
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
        attend = (dilated_local_attention_reference
                  if self.use_reference else dilated_local_attention)
        heads_per_group = h // len(self.dilations)
        outs = []
        for g, r in enumerate(self.dilations):
            sl = slice(g * heads_per_group, (g + 1) * heads_per_group)
            outs.append(
                attend(q[:, sl], k[:, sl], v[:, sl], self.kernel_size, r,
                       self.scale))
        # Built out of place (the official code writes into its input, which breaks fp32 backward).
        out = torch.cat(outs, dim=1)  # (B, heads, d, H, W)
        out = out.permute(0, 3, 4, 1, 2).reshape(B, H, W, C)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, dilations={self.dilations}')
