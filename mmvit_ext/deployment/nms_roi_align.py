"""NMS and RoIAlign as torch operators that every export path can take.

mmcv's NMS and RoIAlign are Python functions around its compiled extension: the TorchScript
exporter needs a symbolic for them and ``torch.export`` (and with it the dynamo ONNX exporter)
cannot trace into them at all. Declared here as ``torch.library`` operators on the same mmcv
kernels (so eager results do not change), each with

- a fake (meta) form for ``torch.export``: NMS keeps a data-dependent number of boxes;
- a symbolic for the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``);
- an ONNX translation for the dynamo exporter (:data:`ONNX_TRANSLATIONS`);

and a traced or exported program holding them loads again once this module is imported
(``import mmvit_ext.deployment`` before ``torch.jit.load`` / ``torch.export.load``). ONNX's
``NonMaxSuppression`` and ``RoiAlign`` (``coordinate_transformation_mode='half_pixel'``,
opset >= 16) compute what mmcv's ``nms`` (offset 0) and ``roi_align`` (avg, ``aligned=True``)
compute.
"""
import functools

import torch

__all__ = ['nms', 'roi_align', 'ONNX_TRANSLATIONS']  # and a stable sort for the dynamo exporter

_KEEP_ALL = 2 ** 31 - 1  # NonMaxSuppression's "no limit on kept boxes"


@functools.lru_cache(maxsize=None)
def _ext():
    from mmcv.utils import ext_loader
    return ext_loader.load_ext('_ext', ['nms', 'roi_align_forward'])


# ----------------------------------------------------------------------------- the operators
from ..utils.torch_features import require  # noqa: E402

require('whole-model export (our NMS / RoIAlign custom ops)')


@torch.library.custom_op('mmvit_ext::nms', mutates_args=())
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (int64) of the boxes kept by NMS, by descending score (mmcv's kernel, offset 0)."""
    return _ext().nms(boxes, scores, iou_threshold=iou_threshold, offset=0)


@nms.register_fake
def _nms_fake(boxes, scores, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept, ), dtype=torch.long)


@torch.library.custom_op('mmvit_ext::roi_align', mutates_args=())
def roi_align(features: torch.Tensor, rois: torch.Tensor, pooled_height: int, pooled_width: int,
              spatial_scale: float, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """mmcv's average RoIAlign; ``rois`` (K, 5) = (image index, x1, y1, x2, y2)."""
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f'rois must be (K, 5) = (image index, x1, y1, x2, y2), '
                         f'got {tuple(rois.shape)}')
    out = features.new_zeros((rois.shape[0], features.shape[1], pooled_height, pooled_width))
    unused = features.new_zeros(0)  # argmax buffers of max pooling
    _ext().roi_align_forward(features, rois, out, unused, unused, aligned_height=pooled_height,
                             aligned_width=pooled_width, spatial_scale=spatial_scale,
                             sampling_ratio=sampling_ratio, pool_mode=1, aligned=aligned)
    return out


@roi_align.register_fake
def _roi_align_fake(features, rois, pooled_height, pooled_width, spatial_scale, sampling_ratio,
                    aligned):
    return features.new_empty((rois.shape[0], features.shape[1], pooled_height, pooled_width))


# ----------------------------------------------------------------------------- TorchScript exporter
def _nms_symbolic(g, boxes, scores, iou_threshold):
    from torch.onnx.symbolic_helper import _maybe_get_const

    def const(value, dtype=torch.long):
        return g.op('Constant', value_t=torch.tensor(value, dtype=dtype))
    iou = float(_maybe_get_const(iou_threshold, 'f'))
    keep = g.op('NonMaxSuppression', g.op('Unsqueeze', boxes, const([0])),  # (1, N, 4)
                g.op('Unsqueeze', scores, const([0, 1])),                   # (1, 1, N)
                const([_KEEP_ALL]), const([iou], torch.float32))            # (K, 3)
    return g.op('Squeeze', g.op('Gather', keep, const([2]), axis_i=1), const([1]))


def _roi_align_symbolic(g, features, rois, pooled_height, pooled_width, spatial_scale,
                        sampling_ratio, aligned):
    from torch.onnx.symbolic_helper import _maybe_get_const

    def const(value):
        return g.op('Constant', value_t=torch.tensor(value, dtype=torch.long))
    batch = g.op('Cast', g.op('Squeeze', g.op('Gather', rois, const([0]), axis_i=1), const([1])),
                 to_i=7)  # INT64
    boxes = g.op('Gather', rois, const([1, 2, 3, 4]), axis_i=1)
    return g.op('RoiAlign', features, boxes, batch,
                output_height_i=int(_maybe_get_const(pooled_height, 'i')),
                output_width_i=int(_maybe_get_const(pooled_width, 'i')),
                spatial_scale_f=float(_maybe_get_const(spatial_scale, 'f')),
                sampling_ratio_i=max(0, int(_maybe_get_const(sampling_ratio, 'i'))), mode_s='avg',
                coordinate_transformation_mode_s='half_pixel'
                if _maybe_get_const(aligned, 'b') else 'output_half_pixel')


# RoiAlign's coordinate_transformation_mode exists from opset 16 on (whole-detector export
# checks the opset before it starts)
torch.onnx.register_custom_op_symbolic('mmvit_ext::nms', _nms_symbolic, 11)
torch.onnx.register_custom_op_symbolic('mmvit_ext::roi_align', _roi_align_symbolic, 16)


# ----------------------------------------------------------------------------- dynamo exporter
def _nms_onnx(boxes, scores, iou_threshold: float):
    from onnxscript import opset18 as op
    keep = op.NonMaxSuppression(op.Unsqueeze(boxes, [0]), op.Unsqueeze(scores, [0, 1]),
                                op.Constant(value_ints=[_KEEP_ALL]),
                                op.Constant(value_floats=[float(iou_threshold)]))
    return op.Reshape(op.Slice(keep, [2], [3], [1]), [-1])


def _roi_align_onnx(features, rois, pooled_height: int, pooled_width: int, spatial_scale: float,
                    sampling_ratio: int, aligned: bool):
    from onnxscript import INT64
    from onnxscript import opset18 as op
    batch = op.Cast(op.Reshape(op.Slice(rois, [0], [1], [1]), [-1]), to=INT64.dtype)
    return op.RoiAlign(features, op.Slice(rois, [1], [5], [1]), batch, mode='avg',
                       output_height=pooled_height, output_width=pooled_width,
                       spatial_scale=float(spatial_scale), sampling_ratio=max(0, sampling_ratio),
                       coordinate_transformation_mode='half_pixel' if aligned
                       else 'output_half_pixel')


def _stable_sort_onnx(self, stable=None, dim: int = -1, descending: bool = False):
    """``torch.sort(stable=True)`` (SG-Former's significance order in a ``torch.export``
    program) as ONNX TopK over the whole axis: TopK puts equal values lower index first, which
    is the stable order, ascending or descending."""
    from onnxscript import opset18 as op
    count = op.Reshape(op.Gather(op.Shape(self), dim), [1])
    return op.TopK(self, count, axis=dim, largest=1 if descending else 0, sorted=1)


#: ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``
ONNX_TRANSLATIONS = {torch.ops.mmvit_ext.nms.default: _nms_onnx,
                     torch.ops.mmvit_ext.roi_align.default: _roi_align_onnx,
                     torch.ops.aten.sort.stable: _stable_sort_onnx}
