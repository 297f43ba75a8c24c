"""GPU-friendly forms of non-attention ops, each checked against the plain PyTorch form it replaces.

* :class:`GroupNorm1` -- ``nn.GroupNorm(1, C)`` (SG-Former's stem and downsamplers). The native
  CUDA kernel reduces each (image, group) row with one thread block, so a one-group norm over a
  large map keeps a GPU nearly idle (22% of SG-Former-S's training time on an H100). On CUDA the
  statistics come from ``torch.var_mean``, whose reduction spreads one row over many blocks, and
  the backward is written out so that only the input is kept, as the native op keeps it. The
  native CPU kernel has no such problem (and is 3x faster there than ``var_mean``): CPUs keep it.
* :func:`irffn_hidden` -- the middle of CMT's inverted-residual FFN (DGT): ``fc1 -> GELU -> BN
  -> (+ dwconv -> GELU -> BN) -> fc2`` as one autograd function that keeps two hidden activations
  (the fc1 output and the conv output) instead of six, and recomputes the cheap element-wise
  rest in backward. Same numbers, same running-statistics updates.

Both take the plain path (the native ops, autograd as usual) whenever the fused one has nothing
to offer or must not be used: no gradient needed, tracing or exporting (``torch.jit``, ONNX,
``torch.compile``/``torch.export``: they see standard ops), or norms that are not the plain
PyTorch classes (SyncBatchNorm after ``convert_sync_batchnorm``).

Recomputing in backward trades time for memory. On a GPU memory is what limits a training
batch and the recomputed element-wise passes are cheap; on a CPU the same recomputation costs
~10% of a training step and memory is rarely the limit. :func:`memory_lean` therefore says yes
on accelerators and no on the CPU, unless ``MMVIT_MEMORY_LEAN=1`` / ``0`` (or
:func:`memory_lean_mode`) decides for every device. Both forms give the same numbers.
"""
import contextlib
import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['GroupNorm1', 'group_norm1', 'irffn_hidden', 'plain_path_required',
           'onnx_export_running', 'plain_forms',
           'autocast_dtype', 'memory_lean', 'memory_lean_mode', 'ceil_div', 'counting_flops',
           'accumulation_dtype', 'recompute_in_backward', 'window_key_mask', 'crop_to']


def ceil_div(a, b):
    """``ceil(a / b)`` for sizes ``a >= 0``, ``b > 0``, with non-negative operands only: traced into
    ONNX, ``-(-a // b)`` becomes an integer division of a negative number, which ONNX rounds
    toward zero (a wrong size at every shape but the traced one)."""
    return (a + b - 1) // b


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where sums and softmaxes run: half types in fp32, fp32 / fp64 as they are."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def crop_to(t: torch.Tensor, H, W, dim: int) -> torch.Tensor:
    """``t`` cropped to ``H x W`` along dims ``dim, dim + 1``; under tracers / exporters by two
    index_selects, which make fresh contiguous tensors: a slice would make symbolic shapes test
    whether the crop is a no-op (it is contiguous only when nothing was padded), and
    ``torch.export`` would freeze that test into the program."""
    if not plain_path_required():
        return t[(slice(None), ) * dim + (slice(None, H), slice(None, W))]
    t = t.index_select(dim, torch.arange(H, device=t.device))
    return t.index_select(dim + 1, torch.arange(W, device=t.device))


def window_key_mask(H, W, Hp, Wp, wh: int, ww: int, device) -> torch.Tensor:
    """``(windows, wh * ww)`` bool: which tokens of the row-major ``wh x ww`` windows of an
    ``H x W`` map padded to ``Hp x Wp`` are real. Built from comparisons, so traced sizes stay
    symbolic."""
    rows = torch.arange(Hp, device=device) < H
    cols = torch.arange(Wp, device=device) < W
    valid = (rows[:, None] & cols[None]).reshape(Hp // wh, wh, Wp // ww, ww).permute(0, 2, 1, 3)
    return valid.reshape(-1, wh * ww)


_MEMORY_LEAN_MODES = {'auto': None, '1': True, '0': False}
_memory_lean_override: Optional[bool] = None


def _env_memory_lean() -> Optional[bool]:
    value = os.environ.get('MMVIT_MEMORY_LEAN', 'auto').strip().lower()
    if value not in _MEMORY_LEAN_MODES:
        raise ValueError(f"MMVIT_MEMORY_LEAN must be 'auto', '1' or '0', got {value!r}")
    return _MEMORY_LEAN_MODES[value]


def memory_lean(device: torch.device) -> bool:
    """Whether to recompute in backward rather than keep activations (see the module doc)."""
    if _memory_lean_override is not None:
        return _memory_lean_override
    forced = _env_memory_lean()
    if forced is not None:
        return forced
    return torch.device(device).type != 'cpu'


@contextlib.contextmanager
def memory_lean_mode(enabled: Optional[bool]):
    """Force the memory-lean forms on (True) or off (False) for every device; None = auto."""
    global _memory_lean_override
    previous, _memory_lean_override = _memory_lean_override, enabled
    try:
        yield
    finally:
        _memory_lean_override = previous


_counting_flops = False


@contextlib.contextmanager
def counting_flops():
    """The FLOP counter traces the model as it runs eagerly (it has handles for our custom ops),
    so the export forms are not taken while it runs."""
    global _counting_flops
    previous, _counting_flops = _counting_flops, True
    try:
        yield
    finally:
        _counting_flops = previous


_forced_plain = False


@contextlib.contextmanager
def plain_forms():
    """Run eagerly with the forms tracers and exporters see (the same values up to float
    rounding): the export checks measure how far eager moves between the two arithmetics."""
    global _forced_plain
    previous, _forced_plain = _forced_plain, True
    try:
        yield
    finally:
        _forced_plain = previous


def onnx_export_running() -> bool:
    """True inside ``torch.onnx.export`` (either exporter): ONNX has no stable sort."""
    onnx = getattr(torch, 'onnx', None)
    return bool(onnx is not None and getattr(onnx, 'is_in_onnx_export', lambda: False)())


def plain_path_required() -> bool:
    """True while a tracer or exporter runs: it must see standard ops, not custom functions."""
    if _counting_flops:
        return False
    if _forced_plain or torch.jit.is_scripting() or torch.jit.is_tracing() or onnx_export_running():
        return True
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler is not None and getattr(compiler, 'is_compiling', lambda: False)())


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype active for ``device_type``, None when autocast is off."""
    try:
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4: per-device functions
        if device_type == 'cpu':
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def _acc(t: torch.Tensor) -> torch.Tensor:
    return t.to(accumulation_dtype(t.dtype))


def recompute_in_backward(device, *tensors) -> bool:
    """Whether a memory-lean form (recomputing in backward) should run: a gradient is needed,
    :func:`memory_lean` says so for the device, and no tracer or exporter is running."""
    return (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
            and memory_lean(device) and not plain_path_required())


# ----------------------------------------------------------------------------- GroupNorm(1, C)
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
                eps: float = 1e-5, force_function: bool = False) -> torch.Tensor:
    """``F.group_norm(x, 1, weight, bias, eps)`` for ``(N, C, H, W)`` maps (see module doc);
    ``force_function`` takes the CUDA form on any device (tests)."""
    on_cuda = x.device.type == 'cuda' or force_function
    if not on_cuda or x.dim() != 4 or weight is None or plain_path_required() or x.numel() == 0:
        return F.group_norm(x, 1, weight, bias, eps)
    if autocast_dtype(x.device.type) is not None:
        x = x.float()  # autocast runs group_norm in fp32 too
    return _GroupNorm1Function.apply(x, weight, bias, eps)


class GroupNorm1(nn.GroupNorm):
    """``nn.GroupNorm(1, C)`` with the same parameters and state-dict keys, computed by
    :func:`group_norm1`."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True, **kwargs):
        super().__init__(1, num_channels, eps, affine, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm1(x, self.weight, self.bias, self.eps)


# ----------------------------------------------------------------------------- IRFFN
def _bn_factor(bn: nn.BatchNorm2d) -> float:
    """The running-average factor ``nn.BatchNorm2d.forward`` would use (and its counter step)."""
    if bn.momentum is not None:
        return bn.momentum
    return 1.0 / float(bn.num_batches_tracked)


def _bn_forward(x, bn: nn.BatchNorm2d, factor: float):
    """BN of an NCHW view: output, and the mean / inverse std it normalised with."""
    if bn.training:
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, bn.weight, bn.bias, bn.running_mean, bn.running_var, True, factor, bn.eps)
        return y, mean, invstd
    mean, invstd = bn.running_mean, torch.rsqrt(bn.running_var + bn.eps)
    return _bn_apply(x, mean, invstd, bn.weight, bn.bias), mean, invstd


def _bn_apply(x, mean, invstd, weight, bias):
    xf = _acc(x)
    view = lambda t: t.to(xf.dtype)[None, :, None, None]  # noqa: E731
    scale = view(weight) * view(invstd)
    return torch.addcmul(view(bias) - view(mean) * scale, xf, scale).to(x.dtype)


def _nchw(t):  # (B, H, W, C) -> NCHW view (channels-last memory)
    return t.permute(0, 3, 1, 2)


def _nhwc(t):
    return t.permute(0, 2, 3, 1)


class _IRFFNHiddenFunction(torch.autograd.Function):
    """See :func:`irffn_hidden`. Non-tensor state (the modules, for their eps and running
    statistics) travels in ``ctx``."""

    @staticmethod
    def forward(ctx, x, w1, b1, g1, be1, wd, bd, g2, be2, w2, b2, modules):
        bn1, bn2, factors = modules
        h0 = F.linear(x, w1, b1)  # autocast applies here as it does to nn.Linear
        a = F.gelu(h0)
        b, m1, r1 = _bn_forward(_nchw(a), bn1, factors[0])
        c = F.conv2d(b, wd, bd, 1, 1, 1, wd.shape[0])
        e = F.gelu(c)
        f, m2, r2 = _bn_forward(e, bn2, factors[1])
        y = F.linear(_nhwc(b + f), w2, b2)
        ctx.modules = (bn1, bn2)
        ctx.training = (bn1.training, bn2.training)
        ctx.conv_dtype = c.dtype
        ctx.save_for_backward(x, h0, c, m1, r1, m2, r2, w1, g1, be1, wd, g2, be2, w2)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        # autocast off: the dtypes below are the forward's, chosen explicitly
        with torch.autocast(device_type=grad_y.device.type, enabled=False):
            return _IRFFNHiddenFunction._backward(ctx, grad_y)

    @staticmethod
    def _backward(ctx, grad_y):
        x, h0, c, m1, r1, m2, r2, w1, g1, be1, wd, g2, be2, w2 = ctx.saved_tensors
        bn1, bn2 = ctx.modules
        dt = h0.dtype
        hidden = h0.shape[-1]
        # recompute the element-wise part from the two kept activations
        a = F.gelu(h0)
        b = _bn_apply(_nchw(a), m1, r1, g1, be1)
        e = F.gelu(c)
        g = b + _bn_apply(e, m2, r2, g2, be2)  # NCHW view
        gy = grad_y.reshape(-1, grad_y.shape[-1]).to(dt)
        g_rows = _nhwc(g).reshape(-1, hidden)
        grad_w2 = (gy.t() @ g_rows).to(w2.dtype)
        grad_b2 = gy.sum(0).to(w2.dtype)
        del g, g_rows
        gg = _nchw((gy @ w2.to(dt)).reshape(h0.shape))  # d loss / d (b + f)
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
            gb, _nchw(a), g1, bn1.running_mean, bn1.running_var, m1, r1, ctx.training[0],
            bn1.eps, [True, True, True])
        del gb, a
        gh = _nhwc(torch.ops.aten.gelu_backward(ga.to(dt), _nchw(h0))).reshape(-1, hidden)
        del ga
        grad_x = (gh @ w1.to(dt)).reshape(x.shape).to(x.dtype)
        grad_w1 = (gh.t() @ x.reshape(-1, x.shape[-1]).to(dt)).to(w1.dtype)
        grad_b1 = gh.sum(0).to(w1.dtype)
        return (grad_x, grad_w1, grad_b1, grad_g1.to(g1.dtype), grad_be1.to(be1.dtype),
                grad_wd.to(wd.dtype), grad_bd.to(wd.dtype), grad_g2.to(g2.dtype),
                grad_be2.to(be2.dtype), grad_w2, grad_b2, None)


def _plain_irffn_hidden(x, fc1, bn1, dwconv, bn2, fc2):
    h = bn1(_nchw(F.gelu(fc1(x))))
    h = h + bn2(F.gelu(dwconv(h)))
    return fc2(_nhwc(h))


def irffn_hidden(x: torch.Tensor, fc1: nn.Linear, bn1: nn.BatchNorm2d, dwconv: nn.Conv2d,
                 bn2: nn.BatchNorm2d, fc2: nn.Linear) -> torch.Tensor:
    """``fc2(h + BN2(GELU(dwconv(h))))`` with ``h = BN1(GELU(fc1(x)))``; ``x``: ``(B, H, W, C)``.

    The memory-lean autograd function runs when a gradient is needed, :func:`memory_lean` says
    so for the device, and the norms are plain ``nn.BatchNorm2d`` with running statistics;
    otherwise the same ops run one by one.
    """
    plain_types = all(type(m) is nn.BatchNorm2d and m.track_running_stats and m.affine
                      for m in (bn1, bn2))
    params = [fc1.weight, fc1.bias, bn1.weight, bn1.bias, dwconv.weight, dwconv.bias,
              bn2.weight, bn2.bias, fc2.weight, fc2.bias]
    if (not plain_types or any(p is None for p in params) or x.numel() == 0
            or not recompute_in_backward(x.device, x, *params)):
        return _plain_irffn_hidden(x, fc1, bn1, dwconv, bn2, fc2)
    factors = []
    for bn in (bn1, bn2):
        if bn.training:
            bn.num_batches_tracked.add_(1)  # what nn.BatchNorm2d.forward does
        factors.append(_bn_factor(bn) if bn.training else 0.)
    return _IRFFNHiddenFunction.apply(x, *params, (bn1, bn2, tuple(factors)))
