"""LayerNorm then Linear, the first half of every pre-norm transformer MLP: ``fc(norm(x))``.

The module pair keeps ``x`` (for the norm's backward) and ``norm(x)`` (for the Linear's weight
gradient). The ``lean`` form keeps ``x`` and the per-token mean and inverse deviation, and
recomputes the normalised tokens in backward (one pass over ``x``, against the Linear's 4C MACs
a token): same numbers. It applies to a plain ``nn.LayerNorm`` and ``nn.Linear`` with no hooks of
their own, outside autocast (whose LayerNorm casting this form does not reproduce) and outside
``torch.compile`` (whose partitioner recomputes the normalisation itself); ``fast`` runs the two
modules.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ...attention.forms import dispatch, register, under_torch_compile
from ...attention.shapes import autocast_dtype
from .gelu_linear import hooked

__all__ = ['layer_norm_linear']


class _LayerNormLinearFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, weight, bias, shape, eps):
        t, mean, rstd = torch.ops.aten.native_layer_norm(x, shape, norm_weight, norm_bias, eps)
        ctx.shape, ctx.eps = shape, eps
        ctx.has = (norm_weight is not None, norm_bias is not None, bias is not None)
        ctx.save_for_backward(x, mean, rstd, norm_weight, norm_bias, weight)
        return F.linear(t, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, mean, rstd, norm_weight, norm_bias, weight = ctx.saved_tensors
        has_nw, has_nb, has_b = ctx.has
        t = torch.ops.aten.native_layer_norm(x, ctx.shape, norm_weight, norm_bias, ctx.eps)[0]
        dy2 = grad_y.reshape(-1, grad_y.shape[-1])
        need = ctx.needs_input_grad  # frozen weights (frozen_stages) need no gradient
        grad_w = dy2.t() @ t.reshape(-1, t.shape[-1]) if need[3] else None
        grad_b = dy2.sum(0) if has_b and need[4] else None
        grad_x, grad_nw, grad_nb = torch.ops.aten.native_layer_norm_backward(
            grad_y @ weight, x, ctx.shape, mean, rstd, norm_weight, norm_bias,
            [need[0], has_nw and need[1], has_nb and need[2]])
        return grad_x, grad_nw, grad_nb, grad_w, grad_b, None, None


def layer_norm_linear(x: torch.Tensor, norm: nn.LayerNorm, fc: nn.Linear) -> torch.Tensor:
    """``fc(norm(x))``, in the chosen form."""
    return dispatch('layer_norm_linear', x, norm, fc)


@register('layer_norm_linear', 'fast')
def layer_norm_linear_plain(x, norm, fc):
    return fc(norm(x))


def _lean_applies(x, norm, fc):
    # not under torch.compile, whose partitioner recomputes the normalisation itself (the
    # custom function cost QnA-ViT-T 30 ms of a 495 ms compiled step at 256x256, same memory)
    return (not under_torch_compile() and type(norm) is nn.LayerNorm and type(fc) is nn.Linear
            and not hooked(norm) and not hooked(fc) and x.numel() > 0
            and autocast_dtype(x.device.type) is None)


@register('layer_norm_linear', 'lean', available=_lean_applies)
def layer_norm_linear_lean(x, norm, fc):
    return _LayerNormLinearFunction.apply(x, norm.weight, norm.bias, fc.weight, fc.bias,
                                          list(norm.normalized_shape), norm.eps)
