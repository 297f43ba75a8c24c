"""The parts of a two-stage detector's ``predict`` written so that they trace and export with the
input size free: the RPN's proposals, box decoding, per-class NMS and the RoI extraction, in
mmdet's order of operations (the same floats) without its data-dependent branches.

Ranking and NMS run on what the runtime computes without rounding to a constant: the RPN ranks
anchors by their logits (sigmoid keeps the order; onnxruntime's CPU sigmoid is exactly 0 below
about -18, so ranking its output tied dozens of proposals), the box head by softmax scores.
"""
import math

import torch

from . import nms_roi_align

__all__ = ['decode_boxes', 'rpn_proposals', 'multiclass_nms', 'extract_rois', 'level_nms',
           'check_coder', 'plain_nms_iou', 'as_rois']


def level_nms(boxes, scores, level_ids, iou_threshold: float):
    """mmcv's ``batched_nms`` below its split threshold (boxes of different levels or classes
    shifted apart by ``ids * (max coordinate + 1)``, one NMS), as one ``mmvit_ext::nms`` call with
    no branch on the number of boxes, which is data-dependent after the filters. -> (dets (K, 5),
    kept indices), by descending score. The appended zero makes the max defined with no boxes
    (boxes are clipped at 0, so it does not change the max otherwise)."""
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = level_ids.to(boxes) * (top + 1)
    keep = nms_roi_align.nms(boxes + offsets[:, None], scores, float(iou_threshold))
    return torch.cat([boxes[keep], scores[keep, None]], -1), keep


def _cut(count, limit: int):
    """Length of ``x[:limit]`` for ``count`` items. A plain ``[:limit]`` of a symbolic count makes
    torch.export fix the program to the example's side of the limit; ``sym_min`` keeps it free.
    Tracing (count a plain int) keeps the constant: ONNX Slice clamps it to the size."""
    return torch.sym_min(count, limit) if isinstance(count, torch.SymInt) else limit


def check_coder(coder, where: str) -> None:
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    if type(coder) is not DeltaXYWHBBoxCoder:
        raise NotImplementedError(f'export supports DeltaXYWHBBoxCoder in the {where}, got '
                                  f'{type(coder).__name__}')


def decode_boxes(coder, priors, deltas, height, width):
    """``DeltaXYWHBBoxCoder.decode(priors, deltas, max_shape=(height, width))`` for (K, 4) priors
    and deltas, in mmdet's order of operations (the same floats), without its branch on an
    empty input (data-dependent after NMS) and with a height and width that may be traced
    sizes (clipped by min / max instead of ``clamp_`` with Python numbers)."""
    deltas = deltas * deltas.new_tensor(coder.stds).view(1, -1) \
        + deltas.new_tensor(coder.means).view(1, -1)
    dxy, dwh = deltas[:, :2], deltas[:, 2:]
    pxy = (priors[:, :2] + priors[:, 2:]) * 0.5
    pwh = priors[:, 2:] - priors[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = abs(math.log(16 / 1000))  # the coder's default wh_ratio_clip
    if coder.add_ctr_clamp:
        dxy_wh = torch.clamp(dxy_wh, max=coder.ctr_clamp, min=-coder.ctr_clamp)
        dwh = torch.clamp(dwh, max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if coder.clip_border:
        if not torch.is_tensor(width):  # new_full keeps torch.export's symbolic sizes free
            width, height = boxes.new_full((), width), boxes.new_full((), height)
        limit = torch.stack([width, height, width, height]).to(boxes)
        boxes = torch.maximum(torch.minimum(boxes, limit), boxes.new_zeros(()))
    return boxes


def plain_nms_iou(nms_cfg, where: str) -> float:
    cfg = dict(nms_cfg)
    kind = cfg.pop('type', 'nms')
    cfg.pop('split_thr', None)  # one NMS either way: mmcv's split is per class, same result
    if kind != 'nms' or cfg.pop('class_agnostic', False) or set(cfg) - {'iou_threshold'}:
        raise NotImplementedError(f'export supports plain per-class NMS (type nms, iou_threshold) '
                                  f'in the {where}, got {dict(nms_cfg)}')
    return float(cfg['iou_threshold'])


def rpn_proposals(rpn, feats, height, width) -> torch.Tensor:
    """(K, 4) proposals of one image: mmdet's ``RPNHead.predict`` without size-dependent
    branches (every level sorted and cut at ``nms_pre``, every box through the size filter),
    ranked by logits."""
    cfg = rpn.test_cfg
    if not rpn.use_sigmoid_cls:
        raise NotImplementedError('export supports sigmoid RPN classification')
    check_coder(rpn.bbox_coder, 'RPN')
    cls_scores, bbox_preds = rpn(feats)
    priors = rpn.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                             dtype=feats[0].dtype, device=feats[0].device)
    logits, deltas, anchors, level_ids = [], [], [], []
    for level, (cls_score, bbox_pred, prior) in enumerate(zip(cls_scores, bbox_preds, priors)):
        logit = cls_score[0].permute(1, 2, 0).reshape(-1)
        delta = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
        if cfg.get('nms_pre', -1) > 0:
            logit, order = logit.sort(descending=True)
            keep = _cut(logit.shape[0], cfg.nms_pre)
            logit, order = logit[:keep], order[:keep]
            delta, prior = delta[order], prior[order]
        logits.append(logit)
        deltas.append(delta)
        anchors.append(prior)
        level_ids.append(torch.full_like(logit, level, dtype=torch.long))
    boxes = decode_boxes(rpn.bbox_coder, torch.cat(anchors), torch.cat(deltas), height, width)
    logits, level_ids = torch.cat(logits), torch.cat(level_ids)
    if cfg.get('min_bbox_size', -1) >= 0:
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = (wh > cfg.min_bbox_size).all(1)
        boxes, logits, level_ids = boxes[valid], logits[valid], level_ids[valid]
    dets, _ = level_nms(boxes, logits, level_ids, plain_nms_iou(cfg.nms, 'RPN'))
    return dets[:cfg.max_per_img, :4]


def multiclass_nms(boxes, scores, cfg):
    """mmdet's ``multiclass_nms`` of one image: ``boxes`` (N, 4) or (N, classes x 4), ``scores``
    (N, classes + 1) -> dets (M, 5), labels (M)."""
    num_rois, num_classes = scores.shape[0], scores.shape[1] - 1
    boxes = boxes.reshape(num_rois, -1, 4).expand(num_rois, num_classes, 4).reshape(-1, 4)
    labels = torch.arange(num_classes, device=scores.device).repeat(num_rois)
    scores = scores[:, :-1].reshape(-1)
    valid = scores > cfg.score_thr
    boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    dets, keep = level_nms(boxes, scores, labels, plain_nms_iou(cfg.nms, 'box head'))
    limit = cfg.get('max_per_img', -1)
    if limit > 0:
        dets, keep = dets[:limit], keep[:limit]
    return dets, labels[keep]


def extract_rois(extractor, feats, rois):
    """``SingleRoIExtractor.forward`` without data-dependent branches: every RoI is pooled on
    every level and the level it belongs to is kept (x * 1 + y * 0: the same values)."""
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    if type(extractor) is not SingleRoIExtractor:
        raise NotImplementedError(f'export supports SingleRoIExtractor, got '
                                  f'{type(extractor).__name__}')
    feats = feats[:extractor.num_inputs]
    rois = rois.type_as(feats[0])

    def pool(layer, feat):
        if layer.pool_mode != 'avg' or layer.use_torchvision:
            raise NotImplementedError(f'export supports mmcv RoIAlign with pool_mode avg, got '
                                      f'pool_mode={layer.pool_mode}, '
                                      f'use_torchvision={layer.use_torchvision}')
        return nms_roi_align.roi_align(feat, rois, layer.output_size[0],
                                       layer.output_size[1], layer.spatial_scale,
                                       layer.sampling_ratio, layer.aligned)
    if len(feats) == 1:
        return pool(extractor.roi_layers[0], feats[0])
    levels = extractor.map_roi_levels(rois, len(feats))
    out = 0
    for i, feat in enumerate(feats):
        keep = (levels == i).to(feat.dtype)[:, None, None, None]
        out = out + pool(extractor.roi_layers[i], feat) * keep
    return out



def as_rois(boxes):
    return torch.cat([boxes.new_zeros((boxes.shape[0], 1)), boxes], 1)
