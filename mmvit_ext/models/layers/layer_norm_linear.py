"""LayerNorm then Linear, the first half of every pre-norm transformer MLP: ``fc(norm(x))``.

The module pair keeps ``x`` (for the norm's backward) and ``norm(x)`` (for the Linear's weight
gradient). The ``lean`` form keeps ``x`` and the per-token mean and inverse deviation, and
recomputes the normalised tokens in backward (one pass over ``x``, against the Linear's 4C MACs
a token): same numbers. It applies to a plain ``nn.LayerNorm`` and ``nn.Linear`` with no hooks of
their own; ``fast`` runs the two modules.

Two implementations of the lean form. Eager runs a custom autograd function, outside autocast
(whose LayerNorm casting it does not reproduce). Under ``torch.compile`` (torch >= 2.5) the
partitioner would choose for itself what that function keeps (``x``, the statistics and
``norm(x)``), so there the norm runs as a checkpointed region, which the partitioner must
recompute, and the Linear after it: ``x`` alone is kept (the statistics are recomputed too), and
autocast is replayed as it was. Only the norm is in the region: with the Linear in it, the
partitioner recomputed the Linear's matmul as well, since the MLP's GELU needs its output.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from ...attention.forms import (dispatch, register, under_new_torch_compile,
                                under_torch_compile)
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


def _plain_pair(x, norm, fc):
    return type(norm) is nn.LayerNorm and type(fc) is nn.Linear and not hooked(norm) \
        and not hooked(fc) and x.numel() > 0


def _lean_applies(x, norm, fc):
    return (not under_torch_compile() and _plain_pair(x, norm, fc)
            and autocast_dtype(x.device.type) is None)


def _compiled_lean_applies(x, norm, fc):
    return under_new_torch_compile() and _plain_pair(x, norm, fc)


@register('layer_norm_linear', 'lean', available=_lean_applies)
def layer_norm_linear_lean(x, norm, fc):
    return _LayerNormLinearFunction.apply(x, norm.weight, norm.bias, fc.weight, fc.bias,
                                          list(norm.normalized_shape), norm.eps)


@register('layer_norm_linear', 'lean', available=_compiled_lean_applies, priority=1)
def layer_norm_linear_lean_compiled(x, norm, fc):
    return fc(checkpoint(norm, x, use_reentrant=False, preserve_rng_state=False))
