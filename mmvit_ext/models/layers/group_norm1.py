"""``nn.GroupNorm(1, C)`` (SG-Former's stem and downsamplers), with a faster form on CUDA.

The native CUDA kernel reduces each (image, group) row with one thread block, so a one-group norm
over a large map keeps a GPU nearly idle (22% of SG-Former-S's training time on an H100). The
``fast`` form on CUDA takes the statistics from ``torch.var_mean``, whose reduction spreads one
row over many blocks, and writes the backward out so that only the input is kept, as the native
op keeps it. The native CPU kernel has no such problem (and is 3x faster there than
``var_mean``): elsewhere, and for tracers, the native op runs (the ``traceable`` form).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...attention.forms import dispatch, register
from ...attention.shapes import accumulation_dtype, autocast_dtype

__all__ = ['GroupNorm1', 'group_norm1']


def _acc(t: torch.Tensor) -> torch.Tensor:
    return t.to(accumulation_dtype(t.dtype))


class _GroupNorm1Function(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        xf = _acc(x)
        var, mean = torch.var_mean(xf, dim=(1, 2, 3), correction=0, keepdim=True)  # (N,1,1,1)
        rstd = torch.rsqrt(var + eps)
        w = weight.to(xf.dtype)[None, :, None, None]
        scale = w * rstd  # (N, C, 1, 1): y = x * scale + shift, one pass over x
        shift = bias.to(xf.dtype)[None, :, None, None] - mean * scale
        y = torch.addcmul(shift, xf, scale).to(x.dtype)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, mean, rstd = ctx.saved_tensors
        xf = _acc(x)
        gy = grad_y.to(xf.dtype)
        N, C, H, W = x.shape
        # per (image, channel): sum of dy and of dy * x; everything else is per-image algebra
        s_dy = gy.sum(dim=(2, 3))  # (N, C)
        s_dyx = (gy * xf).sum(dim=(2, 3))
        m, r = mean.reshape(N, 1), rstd.reshape(N, 1)
        s_dyxhat = (s_dyx - m * s_dy) * r  # sum of dy * xhat
        w = weight.to(xf.dtype)[None]
        grad_weight = s_dyxhat.sum(0)
        grad_bias = s_dy.sum(0)
        count = C * H * W
        mean_g = (w * s_dy).sum(1, keepdim=True) / count  # mean of dxhat = dy * w
        mean_gx = (w * s_dyxhat).sum(1, keepdim=True) / count  # mean of dxhat * xhat
        # dx = r * (dy * w - mean_g - xhat * mean_gx) = a * dy + b * x + c
        a = (w * r)[..., None, None]
        b = (-r * r * mean_gx)[..., None, None]
        c = (r * (r * m * mean_gx - mean_g))[..., None, None]
        grad_x = torch.addcmul(torch.addcmul(c, b, xf), a, gy).to(x.dtype)
        return grad_x, grad_weight.to(weight.dtype), grad_bias.to(weight.dtype), None



def group_norm1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float = 1e-5) -> torch.Tensor:
    """``F.group_norm(x, 1, weight, bias, eps)`` for ``(N, C, H, W)`` maps, in the chosen form."""
    return dispatch('group_norm1', x, weight, bias, eps)


def _var_mean_applies(x, weight, bias, eps=1e-5):
    return x.device.type == 'cuda' and x.dim() == 4 and weight is not None and x.numel() > 0


@register('group_norm1', 'fast', name='group_norm1_var_mean', available=_var_mean_applies,
          priority=1)
def group_norm1_var_mean(x, weight, bias, eps=1e-5):
    if autocast_dtype(x.device.type) is not None:
        x = x.float()  # autocast runs group_norm in fp32 too
    return _GroupNorm1Function.apply(x, weight, bias, eps)


@register('group_norm1', ('fast', 'traceable'), name='group_norm1_native')
def group_norm1_native(x, weight, bias, eps=1e-5):
    return F.group_norm(x, 1, weight, bias, eps)


class GroupNorm1(nn.GroupNorm):
    """``nn.GroupNorm(1, C)`` with the same parameters and state-dict keys, computed by
    :func:`group_norm1`."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True, **kwargs):
        super().__init__(1, num_channels, eps, affine, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm1(x, self.weight, self.bias, self.eps)
