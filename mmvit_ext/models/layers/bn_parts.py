"""BatchNorm2d in parts, for autograd functions that keep less for backward than the module
does: the forward that also returns the statistics it used, their application alone, and the
running-average factor ``nn.BatchNorm2d.forward`` would use. Same numbers and the same
running-statistics updates as the module."""
import torch
import torch.nn as nn

from ...attention.shapes import accumulation_dtype

__all__ = ['plain_batchnorm', 'count_batch', 'bn_forward', 'bn_apply', 'bn_backward']


def plain_batchnorm(bn: nn.Module) -> bool:
    """An ``nn.BatchNorm2d`` with running statistics and affine parameters (not SyncBatchNorm
    after ``convert_sync_batchnorm``): what the functions here reproduce."""
    return type(bn) is nn.BatchNorm2d and bn.track_running_stats and bn.affine


def count_batch(bn: nn.BatchNorm2d) -> float:
    """Advance the batch counter as ``nn.BatchNorm2d.forward`` does in training and return the
    running-average factor it would use (0 in eval)."""
    if not bn.training:
        return 0.
    bn.num_batches_tracked.add_(1)
    return bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)


def bn_forward(x, bn: nn.BatchNorm2d, factor: float):
    """BN of an NCHW tensor or view: output, and the mean / inverse std it normalised with."""
    if bn.training:
        return torch.ops.aten.native_batch_norm(x, bn.weight, bn.bias, bn.running_mean,
                                                bn.running_var, True, factor, bn.eps)
    mean, invstd = bn.running_mean, torch.rsqrt(bn.running_var + bn.eps)
    return bn_apply(x, mean, invstd, bn.weight, bn.bias), mean, invstd


def bn_apply(x, mean, invstd, weight, bias):
    """``(x - mean) * invstd * weight + bias`` over the channels of an NCHW tensor."""
    xf = x.to(accumulation_dtype(x.dtype))
    view = lambda t: t.to(xf.dtype)[None, :, None, None]  # noqa: E731
    scale = view(weight) * view(invstd)
    return torch.addcmul(view(bias) - view(mean) * scale, xf, scale).to(x.dtype)


def bn_backward(grad, x, bn: nn.BatchNorm2d, mean, invstd, training: bool):
    """Gradients of input, weight and bias (``native_batch_norm_backward``)."""
    return torch.ops.aten.native_batch_norm_backward(
        grad, x, bn.weight, bn.running_mean, bn.running_var, mean, invstd, training, bn.eps,
        [True, True, True])
