"""GELU then Linear, the second half of every transformer MLP: ``fc(GELU(h))``.

The module pair keeps both ``h`` (for GELU's backward) and ``GELU(h)`` (for the Linear's weight
gradient), two hidden-width activations. The ``lean`` form keeps ``h`` alone and recomputes the
GELU in backward (one element-wise pass, against the Linear's 2C MACs an element): same numbers
in fp32, the same dtypes under autocast. It applies to a plain ``nn.GELU`` and ``nn.Linear``
with no hooks of their own (a hook sees the modules run, so they run); ``fast`` runs the two
modules.

Two implementations of the lean form. Eager runs a custom autograd function. ``torch.compile``
traces such a function into its joint graph, and its partitioner then keeps what it chooses,
which was both ``h`` and ``GELU(h)``: it does not recompute a pointwise result that the backward
has to materialise anyway (for the weight gradient). So under ``torch.compile`` (torch >= 2.5)
the pair runs as a checkpointed region, which the partitioner must recompute: it keeps ``h``
alone, as eager does.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ...attention.forms import (dispatch, register, register_checkpointed_lean,
                                under_torch_compile)

__all__ = ['gelu_linear']


class _GeluLinearFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, h, weight, bias, approximate):
        y = F.linear(F.gelu(h, approximate=approximate), weight, bias)  # autocast as nn.Linear
        ctx.approximate, ctx.mm_dtype, ctx.has_bias = approximate, y.dtype, bias is not None
        ctx.save_for_backward(h, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        h, weight = ctx.saved_tensors
        # autocast off: the matmuls run in the forward's dtype, chosen explicitly
        with torch.autocast(device_type=grad_y.device.type, enabled=False):
            g = F.gelu(h, approximate=ctx.approximate).to(ctx.mm_dtype)
            dy = grad_y.to(ctx.mm_dtype)
            dy2 = dy.reshape(-1, dy.shape[-1])
            grad_g = dy @ weight.to(ctx.mm_dtype)
            # frozen weights (frozen_stages) need no gradient
            grad_w = (dy2.t() @ g.reshape(-1, g.shape[-1])).to(weight.dtype) \
                if ctx.needs_input_grad[1] else None
            grad_b = dy2.sum(0).to(weight.dtype) \
                if ctx.has_bias and ctx.needs_input_grad[2] else None
            grad_h = torch.ops.aten.gelu_backward(grad_g.to(h.dtype), h,
                                                  approximate=ctx.approximate)
        return grad_h, grad_w, grad_b, None


def gelu_linear(h: torch.Tensor, act: nn.Module, fc: nn.Linear) -> torch.Tensor:
    """``fc(act(h))`` with ``act`` a GELU, in the chosen form."""
    return dispatch('gelu_linear', h, act, fc)


@register('gelu_linear', 'fast')
def gelu_linear_plain(h, act, fc):
    return fc(act(h))


def hooked(module: nn.Module) -> bool:
    """Whether ``module`` has hooks of its own (then it must run as a module)."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or getattr(module, '_backward_hooks', None))


def _plain_pair(h, act, fc):
    return type(act) is nn.GELU and type(fc) is nn.Linear and not hooked(act) \
        and not hooked(fc) and h.numel() > 0


def _lean_applies(h, act, fc):
    return not under_torch_compile() and _plain_pair(h, act, fc)


@register('gelu_linear', 'lean', available=_lean_applies)
def gelu_linear_lean(h, act, fc):
    return _GeluLinearFunction.apply(h, fc.weight, fc.bias, act.approximate)


# under torch.compile: the plain pair as a checkpointed region (see the module doc)
register_checkpointed_lean('gelu_linear', gelu_linear_plain, _plain_pair)
