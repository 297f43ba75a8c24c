"""Adaptive average pooling at sizes that do not divide (UperNet's PPM) as two matrix products:
the same bins as PyTorch's, exportable with the input size free (ONNX has no adaptive
pooling). :func:`swap_adaptive_pooling` puts it into the model built for export."""
import torch
import torch.nn as nn

__all__ = ['plain_adaptive_avg_pool2d', 'PlainAdaptiveAvgPool2d', 'swap_adaptive_pooling']


def _bin_average_matrix(n, out: int, like: torch.Tensor) -> torch.Tensor:
    """(out, n) matrix whose row i averages PyTorch's adaptive-pooling bin i of n positions.

    Bin i spans [floor(i n / out), ceil((i + 1) n / out)); n may be a traced size, so the bins
    follow the input size in an exported graph."""
    i = torch.arange(out, device=like.device)
    start = (i * n) // out
    end = ((i + 1) * n + out - 1) // out  # non-negative: ONNX's truncating division is exact
    pos = torch.arange(n, device=like.device)
    inside = ((pos[None] >= start[:, None]) & (pos[None] < end[:, None])).to(like.dtype)
    return inside / inside.sum(1, keepdim=True)


def plain_adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products (any input size, exportable)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh = x.shape[-2] if oh is None else oh
    ow = x.shape[-1] if ow is None else ow
    rows = _bin_average_matrix(x.shape[-2], oh, x)
    cols = _bin_average_matrix(x.shape[-1], ow, x)
    return torch.matmul(torch.matmul(rows, x), cols.t())


class PlainAdaptiveAvgPool2d(nn.Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return plain_adaptive_avg_pool2d(x, self.output_size)


def swap_adaptive_pooling(model: nn.Module) -> int:
    """Replace every ``nn.AdaptiveAvgPool2d`` except global pooling (output 1x1 exports as
    GlobalAveragePool) by :class:`PlainAdaptiveAvgPool2d`; returns how many were replaced."""
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size not in (1, (1, 1)):
                setattr(parent, name, PlainAdaptiveAvgPool2d(child.output_size))
                swapped += 1
    return swapped
