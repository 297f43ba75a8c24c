"""GELU then a convolution: ``conv(GELU(x))`` on NCHW maps (SG-Former's stem and downsamplers).

The module pair keeps ``x`` (for GELU's backward) and ``GELU(x)`` (for the conv's weight
gradient). The ``lean`` form keeps ``x`` alone and recomputes the GELU in backward (one
element-wise pass): same numbers in fp32, the same dtypes under autocast. It applies to a
plain ``nn.GELU`` and ``nn.Conv2d`` (zero padding) with no hooks of their own; ``fast`` runs
the two modules.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ...attention.forms import dispatch, register, register_checkpointed_lean
from .gelu_linear import hooked

__all__ = ['gelu_conv']


class _GeluConvFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, conv_args, approximate):
        y = F.conv2d(F.gelu(x, approximate=approximate), weight, bias, *conv_args)  # autocast
        ctx.conv_args, ctx.approximate, ctx.conv_dtype = conv_args, approximate, y.dtype
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        # autocast off: the conv's backward runs in the forward's dtype, chosen explicitly
        with torch.autocast(device_type=grad_y.device.type, enabled=False):
            g = F.gelu(x, approximate=ctx.approximate).to(ctx.conv_dtype)
            grad_g, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_y.to(ctx.conv_dtype), g, weight.to(ctx.conv_dtype),
                [weight.shape[0]] if ctx.has_bias else None, list(stride), list(padding),
                list(dilation), False, [0, 0], groups,
                [True, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]])
            grad_x = torch.ops.aten.gelu_backward(grad_g.to(x.dtype), x,
                                                  approximate=ctx.approximate)
        return (grad_x, None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(weight.dtype), None, None)


def gelu_conv(x: torch.Tensor, act: nn.Module, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(act(x))`` with ``act`` a GELU, in the chosen form."""
    return dispatch('gelu_conv', x, act, conv)


@register('gelu_conv', 'fast')
def gelu_conv_plain(x, act, conv):
    return conv(act(x))


def _lean_applies(x, act, conv):
    return (type(act) is nn.GELU and type(conv) is nn.Conv2d and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str) and not hooked(act) and not hooked(conv)
            and x.dim() == 4 and x.numel() > 0)


@register('gelu_conv', 'lean', available=_lean_applies)
def gelu_conv_lean(x, act, conv):
    conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    return _GeluConvFunction.apply(x, conv.weight, conv.bias, conv_args, act.approximate)


# under torch.compile: the plain form as a checkpointed region (see the seam's module doc)
register_checkpointed_lean('gelu_conv', gelu_conv_plain, _lean_applies)
