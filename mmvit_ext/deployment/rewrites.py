"""The parts of mmdet's and mmseg's models that do not trace, in forms with the same values
(what mmdeploy's rewriters do):

- :func:`level_nms`: mmcv's ``batched_nms`` as one NMS operator call (:mod:`.ops`), with no
  branch on the box count;
- inside :func:`export_rewrites`: FPN's stride-2 extra level as a strided slice (keeps a
  ``torch.export`` program's size free);
- :func:`swap_adaptive_pooling`: adaptive average pooling at sizes that do not divide (UperNet's
  PPM) as two matrix products.

The RoI extraction, the RPN and the box decoding are written for export in :mod:`.end2end`,
without touching mmdet's classes.
"""
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops

__all__ = ['export_rewrites', 'plain_adaptive_avg_pool2d', 'PlainAdaptiveAvgPool2d',
           'swap_adaptive_pooling', 'level_nms', 'check_detector_opset']

# ----------------------------------------------------------------------------- adaptive pooling
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


# ----------------------------------------------------------------------------- NMS
def level_nms(boxes, scores, level_ids, iou_threshold: float):
    """mmcv's ``batched_nms`` below its split threshold (boxes of different levels or classes
    shifted apart by ``ids * (max coordinate + 1)``, one NMS), as one ``mmvit_ext::nms`` call with
    no branch on the number of boxes, which is data-dependent after the filters. -> (dets (K, 5),
    kept indices), by descending score. The appended zero makes the max defined with no boxes
    (boxes are clipped at 0, so it does not change the max otherwise)."""
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = level_ids.to(boxes) * (top + 1)
    keep = ops.nms(boxes + offsets[:, None], scores, float(iou_threshold))
    return torch.cat([boxes[keep], scores[keep, None]], -1), keep


def check_detector_opset(opset: int) -> None:
    if opset < 16:
        raise ValueError(f'whole-detector export needs opset >= 16 (RoiAlign with '
                         f'coordinate_transformation_mode), got --opset {opset}')


class _FunctionalForFPN:
    """``torch.nn.functional`` as mmdet's FPN module sees it inside :func:`export_rewrites`.

    FPN's extra level is ``max_pool2d(x, 1, stride=2)``: the same values as ``x[..., ::2, ::2]``.
    torch 2.11's shape rule for pooling tests the parity of the input size, so ``torch.export``
    fixed a whole detector to the parity of the example's stride-32 map (a 256 x 320 program
    refused 352 x 384 inputs; found on the GPU machine's torch 2.11, not seen with 2.13). The
    strided slice has a plain ``ceil(n / 2)`` size."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   return_indices=False):
        if kernel_size in (1, (1, 1)) and padding in (0, (0, 0)) and not ceil_mode \
                and not return_indices and isinstance(stride, int):
            return x[..., ::stride, ::stride]
        return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                            return_indices=return_indices)


@contextmanager
def export_rewrites(opset: Optional[int] = 17):
    """Trace and export a module from :func:`mmvit_ext.deployment.exportable` inside this
    context (``opset``: the ONNX opset a detector is exported at; ``None`` when it is only
    traced or run). It swaps FPN's ``F`` for the duration, and restores it."""
    import importlib
    fpn_module = importlib.import_module('mmdet.models.necks.fpn')
    if opset is not None:
        check_detector_opset(opset)
    saved = fpn_module.F
    fpn_module.F = _FunctionalForFPN()
    try:
        yield
    finally:
        fpn_module.F = saved
