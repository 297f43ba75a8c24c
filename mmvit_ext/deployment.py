"""Whole models in tensor mode, in a form the ONNX exporters and onnxruntime take.

mmdet 3.x and mmseg 1.x leave export to mmdeploy, whose rewriters replace the parts of Mask R-CNN
and UperNet that do not trace: NMS (mmcv's has no ONNX symbolic), RoIAlign (mmcv's symbolic
shifts boxes by half a pixel twice at opset >= 16), the RoI extractor's per-level branches, the
RPN's size-dependent branches and mmdet's stale ONNX decoding path (it imports ``mmdet.core``),
and adaptive average pooling at sizes that do not divide (PPM). This module does the same in a
few small pieces, each equal to the eager model on the same input (tested), plus two that keep a
``torch.export`` program's height and width free (the RPN's per-level cut at ``nms_pre``, FPN's
stride-2 extra level):

- :func:`exportable` wraps a model as ``img -> tensors``: the backbone alone, a classifier's
  logits, a segmentor's logits, or a Mask R-CNN's proposals and head outputs (Cascade Mask
  R-CNN: backbone only, for now);
- :func:`export_rewrites` is the context in which the wrapped model is traced and exported.

Outputs of a Mask R-CNN: ``proposals`` (K, 5: box and RPN score, after the RPN's NMS),
``cls_score`` (K, classes + 1), ``bbox_pred`` (K, 4 x classes) and ``mask_preds`` (min(K, 100),
classes, 28, 28) - mmdet's tensor mode plus the proposals the head outputs refer to. Batch 1.
"""
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvit_ext import deploy_ops

__all__ = ['exportable', 'export_rewrites', 'export_program', 'free_size_range', 'build_for_export',
           'as_tuple', 'example_input', 'max_relative_differences', 'routes', 'self_drift',
           'align_tied_proposals', 'output_differences', 'near_tie', 'TIED_SCORE',
           'plain_adaptive_avg_pool2d',
           'PlainAdaptiveAvgPool2d', 'swap_adaptive_pooling', 'two_stage_tensor_forward']


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


# ----------------------------------------------------------------------------- NMS and RoIAlign
def _roi_align_op(self, input, rois):
    """mmcv RoIAlign.forward through the ``mmvit_ext::roi_align`` operator (same kernel)."""
    if self.pool_mode != 'avg' or self.use_torchvision:
        raise NotImplementedError(f'export supports RoIAlign with pool_mode=avg on mmcv\'s '
                                  f'kernel, got pool_mode={self.pool_mode}, '
                                  f'use_torchvision={self.use_torchvision}')
    return deploy_ops.roi_align(input, rois, self.output_size[0], self.output_size[1],
                                self.spatial_scale, self.sampling_ratio, self.aligned)


def level_nms(boxes, scores, level_ids, iou_threshold: float):
    """mmcv's ``batched_nms`` below its split threshold (boxes of different levels shifted apart,
    one NMS), as one ``mmvit_ext::nms`` call with no branch on the number of boxes, which is
    data-dependent after the size filter."""
    offsets = level_ids.to(boxes) * (boxes.max() + 1)
    keep = deploy_ops.nms(boxes + offsets[:, None], scores, float(iou_threshold))
    return torch.cat([boxes[keep], scores[keep, None]], -1), keep


def _roi_extractor_all_levels(self, feats, rois, roi_scale_factor=None):
    """SingleRoIExtractor.forward without data-dependent branches: every RoI is pooled on every
    level and the level it belongs to is kept (x * 1 + y * 0: the same values as mmdet's)."""
    rois = rois.type_as(feats[0])
    if len(feats) == 1:
        return self.roi_layers[0](feats[0], rois)
    levels = self.map_roi_levels(rois, len(feats))
    if roi_scale_factor is not None:
        rois = self.roi_rescale(rois, roi_scale_factor)
    out = 0
    for i, feat in enumerate(feats):
        keep = (levels == i).to(feat.dtype)[:, None, None, None]
        out = out + self.roi_layers[i](feat, rois) * keep
    return out


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
    """Trace and export a model from :func:`exportable` inside this context (``opset``: the
    ONNX opset it is exported at; ``None`` when it is only traced or run)."""
    import importlib
    roi_align_module = importlib.import_module('mmcv.ops.roi_align')  # also a function name
    fpn_module = importlib.import_module('mmdet.models.necks.fpn')
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    if opset is not None:
        check_detector_opset(opset)
    saved = (roi_align_module.RoIAlign.forward, SingleRoIExtractor.forward, fpn_module.F)
    roi_align_module.RoIAlign.forward = _roi_align_op
    SingleRoIExtractor.forward = _roi_extractor_all_levels
    fpn_module.F = _FunctionalForFPN()
    try:
        yield
    finally:
        (roi_align_module.RoIAlign.forward, SingleRoIExtractor.forward, fpn_module.F) = saved


# ----------------------------------------------------------------------------- Mask R-CNN
def _cut(count, limit: int):
    """Length of ``x[:limit]`` for ``count`` items. A plain ``[:limit]`` of a symbolic count makes
    torch.export fix the program to the example's side of the limit (a runtime assert, or, in
    an ONNX file, a count from the example); ``sym_min`` keeps it free. Tracing (TorchScript,
    count a plain int) keeps the constant: ONNX Slice clamps it to the size."""
    return torch.sym_min(count, limit) if isinstance(count, torch.SymInt) else limit


def _rpn_proposals(rpn, feats, height, width):
    """The RPN's proposals of one image (mmdet's RPNHead.predict, without size-dependent branches:
    every level is sorted and cut at ``nms_pre``, every box goes through the size filter)."""
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    cfg = rpn.test_cfg
    cls_scores, bbox_preds = rpn(feats)
    priors = rpn.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                             dtype=feats[0].dtype, device=feats[0].device)
    scores, deltas, anchors, level_ids = [], [], [], []
    for level, (cls_score, bbox_pred, prior) in enumerate(zip(cls_scores, bbox_preds, priors)):
        if not rpn.use_sigmoid_cls:
            raise NotImplementedError('export supports sigmoid RPN classification')
        score = cls_score[0].permute(1, 2, 0).reshape(-1).sigmoid()
        delta = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
        if cfg.get('nms_pre', -1) > 0:
            score, order = score.sort(descending=True)
            keep = _cut(score.shape[0], cfg.nms_pre)
            score, order = score[:keep], order[:keep]
            delta, prior = delta[order], prior[order]
        scores.append(score)
        deltas.append(delta)
        anchors.append(prior)
        level_ids.append(torch.full_like(score, level, dtype=torch.long))
    coder = rpn.bbox_coder
    boxes = delta2bbox(torch.cat(anchors), torch.cat(deltas), coder.means, coder.stds,
                       max_shape=None, clip_border=False, add_ctr_clamp=coder.add_ctr_clamp,
                       ctr_clamp=coder.ctr_clamp)
    if coder.clip_border:  # clip to the (possibly traced) image size
        zero = boxes.new_zeros(())
        if not torch.is_tensor(width):  # new_full keeps torch.export's symbolic sizes free
            width, height = boxes.new_full((), width), boxes.new_full((), height)
        limit = torch.stack([width, height, width, height]).to(boxes)
        boxes = torch.maximum(torch.minimum(boxes, limit), zero)
    scores, level_ids = torch.cat(scores), torch.cat(level_ids)
    if cfg.get('min_bbox_size', -1) >= 0:
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = (wh > cfg.min_bbox_size).all(1)
        boxes, scores, level_ids = boxes[valid], scores[valid], level_ids[valid]
    nms_cfg = dict(cfg.nms)
    if nms_cfg.pop('type', 'nms') != 'nms' or set(nms_cfg) - {'iou_threshold', 'split_thr'}:
        raise NotImplementedError(f'export supports the RPN\'s plain NMS (type nms, '
                                  f'iou_threshold), got {cfg.nms}')
    dets, _ = level_nms(boxes, scores, level_ids, nms_cfg['iou_threshold'])
    return dets[:cfg.max_per_img]


def two_stage_tensor_forward(model, img: torch.Tensor):
    """(proposals, cls_score, bbox_pred, mask_preds) of a two-stage detector for one image."""
    from mmengine.structures import InstanceData
    if img.shape[0] != 1:
        raise ValueError(f'detector export takes one image (batch 1), got batch {img.shape[0]}')
    feats = model.extract_feat(img)
    proposals = _rpn_proposals(model.rpn_head, feats, img.shape[2], img.shape[3])
    heads = model.roi_head.forward(feats, [InstanceData(bboxes=proposals[:, :4])], None)
    return (proposals, *heads)


# ----------------------------------------------------------------------------- torch.export
def free_size_range(height: int, width: int, detector: bool = False) -> Tuple[int, int]:
    """Sizes a program exported at ``height x width`` accepts.

    ``torch.export`` reasons about every size derived from the input's; where the example has a
    window count of 1 (QnA-ViT's 14x14 windows at stride 16, DGT's groups) it special-cases that
    count and the program stays fixed to the example. From a 256 x 256 example up every count is
    >= 2 and 240 .. 4096 stays free; smaller examples get 64 .. 4096 (every stride-32 map at least
    2 wide; enough for DilateFormer and SG-Former, while QnA-ViT and DGT then refuse with torch's
    constraint error). A detector's RPN has a stride-64 level, which must be >= 2 wide too: from
    128 up (or from the example's size, if smaller)."""
    lo = 240 if min(height, width) >= 256 else 64
    if detector:
        lo = max(lo, min(128, height, width))
    return lo, 4096


def export_program(module: nn.Module, img: torch.Tensor):
    """``torch.export`` of a module from :func:`exportable` with free height and width.

    Non-strict tracing; guards that symbolic reasoning cannot prove for the whole range (most are
    divisibility facts true by construction, e.g. a padded size is a multiple of its window)
    become runtime checks instead of failing the export."""
    from mmvit_ext.utils.torch_features import require
    require('torch.export with free height and width')
    lo, hi = free_size_range(*img.shape[-2:], detector=getattr(module, 'kind', '') == 'detector')
    dims = {'img': {2: torch.export.Dim('height', min=lo, max=hi),
                    3: torch.export.Dim('width', min=lo, max=hi)}}
    with export_rewrites(None):
        return torch.export.export(module, (img, ), dynamic_shapes=dims, strict=False,
                                   prefer_deferred_runtime_asserts_over_guards=True)


# ----------------------------------------------------------------------------- comparisons
PERTURBATION = 1e-5  # relative to the input's largest value: a few float roundings
PROBES = 4
NEAR_TIE = 1e-4  # PyTorch's own drift above this: the input sits at a routing near-tie


def as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs, )


def _as_numpy(t):
    """A tensor (any device) or an onnxruntime array as a numpy array."""
    import numpy as np
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def max_relative_differences(got, ref) -> list:
    """Max relative difference per output, tensors or arrays (inf where the shapes differ: e.g.
    NMS kept another number of proposals)."""
    import numpy as np
    diffs = []
    for g, r in zip(got, ref):
        g, r = _as_numpy(g), _as_numpy(r)
        if g.shape != r.shape:
            diffs.append(float('inf'))
        elif r.size:
            diffs.append(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12)))
        else:
            diffs.append(0.)
    return diffs


TIED_SCORE = 1e-5  # proposal scores closer than this (relative) rank in either order


def align_tied_proposals(got, ref) -> tuple:
    """``got`` (a detector's tensor-mode outputs: proposals ``(n, 5)`` sorted by score, then
    per-proposal head outputs) as numpy arrays, its proposals reordered to ``ref``'s where the two
    differ only in the order of proposals whose scores tie within :data:`TIED_SCORE` (a reordered
    float sum moved a score in its 7th digit: the same proposals, ranked the other way). A row is
    moved only onto a rank whose score in ``ref`` ties with its own, and onto a row of ``ref`` with
    the same score and box (within 1e-4 of the largest coordinate); unless every row finds one,
    ``got`` comes back in its own order, so any real difference still shows. Outputs shorter than
    the proposals (the mask head's first 100 rows) are reordered only where the reordering stays
    inside them."""
    import numpy as np
    arrays = tuple(_as_numpy(g) for g in got)
    got0, ref0 = arrays[0], _as_numpy(ref[0])
    if got0.shape != ref0.shape or got0.ndim != 2 or got0.shape[1] != 5 or not len(ref0):
        return arrays
    box_tol = 1e-4 * max(float(np.abs(ref0[:, :4]).max()), 1e-12)
    score_tol = TIED_SCORE * max(float(np.abs(ref0[:, 4]).max()), 1e-12)
    box_gap = np.abs(ref0[:, None, :4] - got0[None, :, :4]).max(-1)  # (ref row, got row)
    fits = ((box_gap <= box_tol) & (np.abs(ref0[:, None, 4] - got0[None, :, 4]) <= score_tol)
            # and only between ranks that tie in ref: out-of-order proposals still differ
            & (np.abs(ref0[:, None, 4] - ref0[None, :, 4]) <= score_tol))
    order, taken = [], np.zeros(len(got0), dtype=bool)
    for i in range(len(ref0)):
        candidates = np.flatnonzero(fits[i] & ~taken)
        if not len(candidates):
            return arrays
        j = int(candidates[np.argmin(box_gap[i, candidates])])
        taken[j] = True
        order.append(j)
    order = np.asarray(order)
    aligned = []
    for a in arrays:
        rows = a.shape[0] if a.ndim else 0
        if rows == len(order):
            a = a[order]
        elif 0 < rows < len(order) and set(order[:rows].tolist()) == set(range(rows)):
            a = a[order[:rows]]
        aligned.append(a)
    return tuple(aligned)


def output_differences(module: nn.Module, got, ref) -> list:
    """Max relative difference per output of ``module`` (from :func:`exportable`) between another
    runtime's ``got`` and eager's ``ref``; for a detector, after :func:`align_tied_proposals`."""
    if getattr(module, 'kind', '') == 'detector':
        got = align_tied_proposals(got, ref)
    return max_relative_differences(got, ref)


def routes(module: nn.Module) -> bool:
    """Whether discrete choices decide ``module``'s outputs (a module from :func:`exportable`):
    a detector (top-k, NMS), or a backbone whose ``routes_tokens`` says so (SG-Former, DGT)."""
    model = getattr(module, 'model', module)
    backbone = getattr(model, 'backbone', model)
    return getattr(module, 'kind', '') == 'detector' or getattr(backbone, 'routes_tokens', False)


def self_drift(module: nn.Module, x: torch.Tensor, ref) -> float:
    """How far ``module``'s own outputs (``ref`` at ``x``) move under rounding-size changes: the
    input moved by a few float roundings (:data:`PROBES` seeded perturbations of
    :data:`PERTURBATION`), and eager run with the plain forms that tracers and exporters see
    (:func:`mmvit_ext.models.ops.plain_forms`: the same values in another summation order). Above
    :data:`NEAR_TIE` the input sits at a routing near-tie (a sort, top-k, k-means or NMS decided
    by rounding), where any other runtime or summation order may decide differently. (The plain
    forms catch ties the input probes miss: two RPN anchors of a flat image region whose scores
    differ in the 7th digit moved together under every input probe, and swapped places in the
    exported program.) The plain forms count only for a module that routes (:func:`routes`):
    elsewhere a difference between the two forms is a bug, not a tie."""
    from mmvit_ext.models.ops import plain_forms
    drift = 0.
    for seed in range(0 if routes(module) else 1, PROBES + 1):
        with torch.no_grad():
            if seed == 0:
                with plain_forms(), export_rewrites(None):
                    moved = as_tuple(module(x))
            else:
                noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
                moved = as_tuple(module(x + noise * PERTURBATION * float(x.abs().max())))
        drift = max(drift, max(max_relative_differences(moved, ref)))
    return drift


def near_tie(worst: float, drift: float) -> bool:
    """The deployment tools' one pass rule past the tolerance: the input sits at a routing
    near-tie (eager's own :func:`self_drift` above :data:`NEAR_TIE`) and the other runtime is no
    further than twice that drift from eager, i.e. it decided the tie no worse than a rounding
    change of the input does in eager itself."""
    return drift > NEAR_TIE and worst <= 2 * drift


def example_input(image: Optional[str], shape, cfg) -> torch.Tensor:
    """(1, 3, H, W) input normalised by the config's data preprocessor: ``image`` is a file, or
    ``'noise'`` (uniform noise: no flat regions, so no tokens tied by symmetry), or None (an
    image of the built-in small COCO set), resized to ``shape``."""
    import cv2
    import numpy as np
    if image == 'noise':
        rng = np.random.default_rng(0)
        img = rng.uniform(0, 255, (shape[0], shape[1], 3)).astype(np.float32)
    else:
        if image:
            img = cv2.imread(image, cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f'cannot read image {image}')
            img = img[..., ::-1]
        else:
            from mmvit_ext.datasets.small import _render, _sample_scene
            rng = np.random.default_rng(0)
            h, w = 480, 640
            img = np.asarray(_render(rng, h, w, _sample_scene(rng, h, w, 3, 80, 200))[0])
        img = cv2.resize(np.ascontiguousarray(img), (shape[1], shape[0])).astype(np.float32)
    pre = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {}
    mean = np.array(pre.get('mean', [123.675, 116.28, 103.53]), np.float32)
    std = np.array(pre.get('std', [58.395, 57.12, 57.375]), np.float32)
    return torch.from_numpy(((img - mean) / std).transpose(2, 0, 1)[None].copy())


def build_for_export(config: str, checkpoint: Optional[str] = None):
    """``(cfg, model, scope)`` of a config file (or installed config name) as the export tools
    take it: random weights seeded with 0, or ``checkpoint`` loaded strictly (a checkpoint that
    does not fit is an error naming the keys)."""
    from mmengine.config import Config

    from mmvit_ext.utils.build import build_model_from_cfg
    from mmvit_ext.utils.runner_setup import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(cfg)
    if checkpoint:
        from mmvit_ext.engine.guards import check_checkpoint_fits
        from mmvit_ext.utils.safe_load import safe_torch_load
        ckpt = safe_torch_load(checkpoint, map_location='cpu')
        check_checkpoint_fits(model, ckpt, checkpoint, 'strict')
        model.load_state_dict(ckpt.get('state_dict', ckpt))
    return cfg, model, scope


# ----------------------------------------------------------------------------- wrapper
class _TensorMode(nn.Module):
    def __init__(self, model, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, img):
        if self.kind == 'backbone':
            return self.model.backbone(img)
        if self.kind == 'classifier':
            return self.model(img, mode='tensor')
        if self.kind == 'segmentor':
            return self.model._forward(img)
        return two_stage_tensor_forward(self.model, img)


def model_kind(model, scope: str) -> str:
    if scope == 'mmpretrain':
        return 'classifier'
    if scope == 'mmseg':
        return 'segmentor'
    from mmdet.models.roi_heads import StandardRoIHead
    if getattr(model, 'rpn_head', None) is not None and \
            type(getattr(model, 'roi_head', None)) is StandardRoIHead:
        return 'detector'
    what = type(getattr(model, 'roi_head', None) or model).__name__
    raise NotImplementedError(f'whole-model export covers Mask R-CNN / Faster R-CNN '
                              f'(StandardRoIHead), segmentors and classifiers, not {what} yet '
                              f'(its stages split proposals by a count fixed at trace time); '
                              f'export the backbone with --backbone')


def exportable(model, scope: str, whole: bool = True) -> nn.Module:
    """``img -> tensors`` module of a built model (see the module doc); adaptive pooling is made
    exportable in place. Trace / export it inside :func:`export_rewrites`."""
    # a classifier is always exported whole: its backbone alone has no use in deployment
    kind = model_kind(model, scope) if whole or scope == 'mmpretrain' else 'backbone'
    swap_adaptive_pooling(model)
    return _TensorMode(model, kind).eval()
