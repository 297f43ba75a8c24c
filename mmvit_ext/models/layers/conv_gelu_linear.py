"""The tail of a convolutional MLP on tokens: ``fc(GELU(h + conv(h)))`` (SG-Former's MLP, whose
depthwise 3x3 conv is a residual inside the hidden layer).

The modules one by one keep three hidden-width activations for backward: ``h`` (for the conv),
``h + conv(h)`` (for GELU) and the GELU output (for ``fc``). The ``lean`` form keeps ``h`` alone
and recomputes the conv, the sum and the GELU in backward (9 MACs an element for a 3x3
depthwise conv, against ``fc``'s C): same numbers in fp32, the same dtypes under autocast. It
applies to a plain ``nn.Conv2d`` (zero padding), ``nn.GELU`` and ``nn.Linear`` with no hooks of
their own; ``fast`` runs the modules.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ...attention.forms import dispatch, register, register_checkpointed_lean
from ...attention.sg import conv_on_tokens
from .gelu_linear import hooked

__all__ = ['conv_gelu_linear']


def _conv_tokens(h, weight, bias, hw, conv_args):
    # conv_on_tokens with the weights as arguments: tokens as a channels-last NCHW view
    B, N, C = h.shape
    y = F.conv2d(h.reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2), weight, bias, *conv_args)
    return y.permute(0, 2, 3, 1).reshape(B, N, y.shape[1])


class _ConvGeluLinearFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, h, conv_weight, conv_bias, weight, bias, hw, conv_args, approximate):
        c = _conv_tokens(h, conv_weight, conv_bias, hw, conv_args)  # autocast as nn.Conv2d
        y = F.linear(F.gelu(h + c, approximate=approximate), weight, bias)
        ctx.hw, ctx.conv_args, ctx.approximate = hw, conv_args, approximate
        ctx.conv_dtype, ctx.mm_dtype = c.dtype, y.dtype
        ctx.has_conv_bias, ctx.has_bias = conv_bias is not None, bias is not None
        ctx.save_for_backward(h, conv_weight, conv_bias, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        h, conv_weight, conv_bias, weight = ctx.saved_tensors
        # autocast off: every op below runs in the forward's dtype, chosen explicitly. The
        # backward of GELU and of the conv are called directly, not through autograd.grad,
        # which torch.compile cannot trace
        with torch.autocast(device_type=grad_y.device.type, enabled=False):
            cd = ctx.conv_dtype
            hc, wc = h.to(cd), conv_weight.to(cd)
            bc = conv_bias.to(cd) if ctx.has_conv_bias else None
            s = h + _conv_tokens(hc, wc, bc, ctx.hw, ctx.conv_args)
            a = F.gelu(s, approximate=ctx.approximate)
            dy = grad_y.to(ctx.mm_dtype)
            dy2 = dy.reshape(-1, dy.shape[-1])
            a2 = a.to(ctx.mm_dtype)
            grad_w = (dy2.t() @ a2.reshape(-1, a2.shape[-1])).to(weight.dtype)
            grad_b = dy2.sum(0).to(weight.dtype) if ctx.has_bias else None
            grad_a = (dy @ weight.to(ctx.mm_dtype)).to(a.dtype)
            del a, a2
            grad_s = torch.ops.aten.gelu_backward(grad_a, s, approximate=ctx.approximate)
            del s, grad_a
            B, N, C = h.shape
            stride, padding, dilation, groups = ctx.conv_args
            grad_x, grad_wc, grad_bc = torch.ops.aten.convolution_backward(
                grad_s.to(cd).reshape(B, ctx.hw[0], ctx.hw[1], -1).permute(0, 3, 1, 2),
                hc.reshape(B, ctx.hw[0], ctx.hw[1], C).permute(0, 3, 1, 2), wc,
                [wc.shape[0]] if ctx.has_conv_bias else None, list(stride), list(padding),
                list(dilation), False, [0, 0], groups, [True, True, ctx.has_conv_bias])
            grad_h = grad_s.to(h.dtype) + grad_x.permute(0, 2, 3, 1).reshape(B, N, C).to(h.dtype)
        grad_wc = grad_wc.to(conv_weight.dtype)
        grad_bc = grad_bc.to(conv_bias.dtype) if ctx.has_conv_bias else None
        return grad_h, grad_wc, grad_bc, grad_w, grad_b, None, None, None


def conv_gelu_linear(h: torch.Tensor, hw: Tuple[int, int], conv: nn.Conv2d, act: nn.GELU,
                     fc: nn.Linear) -> torch.Tensor:
    """``fc(act(h + conv(h)))`` on ``(B, N, C)`` row-major tokens of an ``hw`` map, in the
    chosen form."""
    return dispatch('conv_gelu_linear', h, hw, conv, act, fc)


@register('conv_gelu_linear', 'fast')
def conv_gelu_linear_plain(h, hw, conv, act, fc):
    return fc(act(h + conv_on_tokens(conv, h, hw)))


def _lean_applies(h, hw, conv, act, fc):
    return (type(conv) is nn.Conv2d and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str) and type(act) is nn.GELU
            and type(fc) is nn.Linear and not any(hooked(m) for m in (conv, act, fc))
            and h.numel() > 0)


@register('conv_gelu_linear', 'lean', available=_lean_applies)
def conv_gelu_linear_lean(h, hw, conv, act, fc):
    conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    return _ConvGeluLinearFunction.apply(h, conv.weight, conv.bias, fc.weight, fc.bias,
                                         tuple(hw), conv_args, act.approximate)


# under torch.compile: the plain form as a checkpointed region (see the seam's module doc)
register_checkpointed_lean('conv_gelu_linear', conv_gelu_linear_plain, _lean_applies)
