"""GELU then BatchNorm (CMT's order, DGT's stem): ``BN(GELU(x))`` on NCHW maps.

The ``lean`` form keeps only ``x`` for backward and recomputes the GELU there; the module pair
keeps both ``x`` (for GELU) and ``GELU(x)`` (for BN). Same numbers, same running-statistics
updates. It applies to a plain ``nn.BatchNorm2d`` (not SyncBatchNorm); ``fast`` runs the two
modules.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...attention.forms import dispatch, register, traced_by_this_dynamo
from .bn_parts import bn_backward, bn_forward, count_batch, plain_batchnorm

__all__ = ['gelu_bn']


class _GeluBNFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, bn, factor):
        y, mean, invstd = bn_forward(F.gelu(x), bn, factor)
        ctx.bn, ctx.training = bn, bn.training
        ctx.save_for_backward(x, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, mean, invstd = ctx.saved_tensors
        with torch.autocast(device_type=grad_y.device.type, enabled=False):
            grad_a, grad_w, grad_b = bn_backward(grad_y.to(x.dtype).contiguous(
                memory_format=_format_of(x)), F.gelu(x), ctx.bn, mean, invstd, ctx.training)
            grad_x = torch.ops.aten.gelu_backward(grad_a, x)
        return grad_x, grad_w, grad_b, None, None


def _format_of(t):
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
            and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def gelu_bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """``bn(GELU(x))``, in the chosen form."""
    return dispatch('gelu_bn', x, bn)


@register('gelu_bn', 'fast')
def gelu_bn_plain(x, bn):
    return bn(F.gelu(x))


def _lean_applies(x, bn):
    return traced_by_this_dynamo() and plain_batchnorm(bn) and x.numel() > 0


@register('gelu_bn', 'lean', available=_lean_applies)
def gelu_bn_lean(x, bn):
    return _GeluBNFunction.apply(x, bn.weight, bn.bias, bn, count_batch(bn))
