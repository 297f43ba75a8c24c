"""CMT's inverted-residual FFN (DGT): ``fc1 -> GELU -> BN -> (+ dwconv -> GELU -> BN) -> fc2
-> BN``.

Two operators: ``irffn`` (the whole FFN) and ``irffn.hidden`` (everything up to ``fc2``).

``irffn``: with its three BatchNorms in eval mode, the ``fast`` form folds the last two into
``fc2`` (``BN3(fc2(h + BN2(e)))`` is one ``addcmul`` and one Linear with folded weights: two
passes over the 4x-wide hidden map and one over the output fewer, the standard inference fold,
equal up to float rounding); otherwise, and in the ``reference`` and ``lean`` forms, it runs
``irffn.hidden`` then the last BatchNorm.

``irffn.hidden``: the ``lean`` form runs the middle as one autograd function that keeps one
hidden activation (the fc1 output) instead of six, and recomputes the rest in backward
(element-wise ops and the depthwise conv, 9 MACs an element against fc1's and fc2's 2C): same
numbers, same running-statistics updates. It applies when the norms are plain ``nn.BatchNorm2d``
with running statistics (not SyncBatchNorm after ``convert_sync_batchnorm``); the ``fast`` form
runs the same ops one by one.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...attention.forms import dispatch, register, traced_by_this_dynamo
from .bn_parts import bn_apply, bn_forward, count_batch, plain_batchnorm

__all__ = ['irffn', 'irffn_hidden', 'nchw', 'nhwc']


def nchw(t):  # (B, H, W, C) -> NCHW view (channels-last memory)
    return t.permute(0, 3, 1, 2)


def nhwc(t):  # NCHW -> (B, H, W, C) view
    return t.permute(0, 2, 3, 1)


class _IRFFNHiddenFunction(torch.autograd.Function):
    """See :func:`irffn_hidden`. Non-tensor state (the modules, for their eps and running
    statistics) travels in ``ctx``."""

    @staticmethod
    def forward(ctx, x, w1, b1, g1, be1, wd, bd, g2, be2, w2, b2, modules):
        bn1, bn2, factors = modules
        h0 = F.linear(x, w1, b1)  # autocast applies here as it does to nn.Linear
        a = F.gelu(h0)
        b, m1, r1 = bn_forward(nchw(a), bn1, factors[0])
        c = F.conv2d(b, wd, bd, 1, 1, 1, wd.shape[0])
        e = F.gelu(c)
        f, m2, r2 = bn_forward(e, bn2, factors[1])
        y = F.linear(nhwc(b + f), w2, b2)
        ctx.modules = (bn1, bn2)
        ctx.training = (bn1.training, bn2.training)
        ctx.conv_dtype = c.dtype
        ctx.save_for_backward(x, h0, m1, r1, m2, r2, w1, g1, be1, wd, bd, g2, be2, w2)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        # autocast off: the dtypes below are the forward's, chosen explicitly
        with torch.autocast(device_type=grad_y.device.type, enabled=False):
            return _IRFFNHiddenFunction._backward(ctx, grad_y)

    @staticmethod
    def _backward(ctx, grad_y):
        x, h0, m1, r1, m2, r2, w1, g1, be1, wd, bd, g2, be2, w2 = ctx.saved_tensors
        bn1, bn2 = ctx.modules
        dt = h0.dtype
        hidden = h0.shape[-1]
        # recompute the rest from the kept fc1 output; the conv in the forward's dtype (under
        # autocast: its half-precision weights), so c is the forward's c bit for bit
        a = F.gelu(h0)
        b = bn_apply(nchw(a), m1, r1, g1, be1)
        cd = ctx.conv_dtype
        c = F.conv2d(b.to(cd), wd.to(cd), None if bd is None else bd.to(cd), 1, 1, 1,
                     wd.shape[0])
        e = F.gelu(c)
        g = b + bn_apply(e, m2, r2, g2, be2)  # NCHW view
        gy = grad_y.reshape(-1, grad_y.shape[-1]).to(dt)
        g_rows = nhwc(g).reshape(-1, hidden)
        grad_w2 = (gy.t() @ g_rows).to(w2.dtype)
        grad_b2 = gy.sum(0).to(w2.dtype)
        del g, g_rows
        gg = nchw((gy @ w2.to(dt)).reshape(h0.shape))  # d loss / d (b + f)
        ge, grad_g2, grad_be2 = torch.ops.aten.native_batch_norm_backward(
            gg, e, g2, bn2.running_mean, bn2.running_var, m2, r2, ctx.training[1], bn2.eps,
            [True, True, True])
        del e
        gc = torch.ops.aten.gelu_backward(ge.to(c.dtype), c)
        del ge
        gb, grad_wd, grad_bd = torch.ops.aten.convolution_backward(
            gc, b.to(ctx.conv_dtype), wd.to(ctx.conv_dtype), [hidden], [1, 1], [1, 1], [1, 1],
            False, [0, 0], hidden, [True, True, True])
        del gc, b
        gb = gb.to(dt) + gg
        del gg
        ga, grad_g1, grad_be1 = torch.ops.aten.native_batch_norm_backward(
            gb, nchw(a), g1, bn1.running_mean, bn1.running_var, m1, r1, ctx.training[0],
            bn1.eps, [True, True, True])
        del gb, a
        gh = nhwc(torch.ops.aten.gelu_backward(ga.to(dt), nchw(h0))).reshape(-1, hidden)
        del ga
        grad_x = (gh @ w1.to(dt)).reshape(x.shape).to(x.dtype)
        grad_w1 = (gh.t() @ x.reshape(-1, x.shape[-1]).to(dt)).to(w1.dtype)
        grad_b1 = gh.sum(0).to(w1.dtype)
        return (grad_x, grad_w1, grad_b1, grad_g1.to(g1.dtype), grad_be1.to(be1.dtype),
                grad_wd.to(wd.dtype), grad_bd.to(wd.dtype), grad_g2.to(g2.dtype),
                grad_be2.to(be2.dtype), grad_w2, grad_b2, None)


def irffn_hidden(x: torch.Tensor, fc1: nn.Linear, bn1: nn.BatchNorm2d, dwconv: nn.Conv2d,
                 bn2: nn.BatchNorm2d, fc2: nn.Linear) -> torch.Tensor:
    """``fc2(h + BN2(GELU(dwconv(h))))`` with ``h = BN1(GELU(fc1(x)))``; ``x``: ``(B, H, W, C)``,
    in the chosen form."""
    return dispatch('irffn.hidden', x, fc1, bn1, dwconv, bn2, fc2)


@register('irffn.hidden', 'fast')
def irffn_hidden_plain(x, fc1, bn1, dwconv, bn2, fc2):
    h = bn1(nchw(F.gelu(fc1(x))))
    h = h + bn2(F.gelu(dwconv(h)))
    return fc2(nhwc(h))


def _params(fc1, bn1, dwconv, bn2, fc2):
    return [fc1.weight, fc1.bias, bn1.weight, bn1.bias, dwconv.weight, dwconv.bias,
            bn2.weight, bn2.bias, fc2.weight, fc2.bias]


def _lean_applies(x, fc1, bn1, dwconv, bn2, fc2):
    return (traced_by_this_dynamo() and plain_batchnorm(bn1) and plain_batchnorm(bn2)
            and x.numel() > 0 and all(p is not None for p in _params(fc1, bn1, dwconv, bn2, fc2)))


@register('irffn.hidden', 'lean', available=_lean_applies)
def irffn_hidden_lean(x, fc1, bn1, dwconv, bn2, fc2):
    factors = (count_batch(bn1), count_batch(bn2))
    return _IRFFNHiddenFunction.apply(x, *_params(fc1, bn1, dwconv, bn2, fc2),
                                      (bn1, bn2, factors))


# ----------------------------------------------------------------------------- the whole FFN
def irffn(x: torch.Tensor, fc1: nn.Linear, bn1: nn.BatchNorm2d, dwconv: nn.Conv2d,
          bn2: nn.BatchNorm2d, fc2: nn.Linear, bn3: nn.BatchNorm2d) -> torch.Tensor:
    """``BN3(irffn_hidden(x, ...))`` on ``(B, H, W, C)`` tokens, in the chosen form."""
    return dispatch('irffn', x, fc1, bn1, dwconv, bn2, fc2, bn3)


@register('irffn', ('fast', 'reference', 'lean'))
def irffn_layers(x, fc1, bn1, dwconv, bn2, fc2, bn3):
    return nhwc(bn3(nchw(irffn_hidden(x, fc1, bn1, dwconv, bn2, fc2))))


def _folds(x, fc1, bn1, dwconv, bn2, fc2, bn3):
    """Every BatchNorm a plain one in eval mode (running statistics, affine)."""
    return all(plain_batchnorm(bn) and not bn.training for bn in (bn1, bn2, bn3)) \
        and fc2.bias is not None and x.numel() > 0


def _scale_shift(bn):
    """``BN(z) = z * scale + shift`` of an eval-mode BatchNorm, per channel."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@register('irffn', 'fast', name='irffn_folded', available=_folds, priority=1)
def irffn_folded(x, fc1, bn1, dwconv, bn2, fc2, bn3):
    h = bn1(nchw(F.gelu(fc1(x))))
    e = F.gelu(dwconv(h))
    s2, t2 = _scale_shift(bn2)
    s3, t3 = _scale_shift(bn3)
    # BN3(W (h + s2 e + t2) + c) = (s3 W)(h + s2 e) + s3 (W t2 + c) + t3
    weight = fc2.weight * s3[:, None]
    bias = s3 * (fc2.weight @ t2 + fc2.bias) + t3
    return F.linear(nhwc(torch.addcmul(h, e, s2[:, None, None])), weight, bias)
