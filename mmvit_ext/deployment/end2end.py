"""Whole models as ``input -> final results`` modules, the form that is exported.

The input is one image as the config's test pipeline leaves it: resized, pixel values 0..255
(float32), channels in the order the pipeline loads them (BGR for mmcv's loaders), shape
(1, 3, H, W) with H and W free. What mmdet's, mmseg's and mmpretrain's data preprocessors do at
test time (channel order, mean / std, padding to the size divisor) happens inside the graph, as
does every post-processing step of the model's own ``predict``:

- detector (Mask R-CNN, Cascade Mask R-CNN; Faster R-CNN without ``masks``): ``dets`` (N, 5:
  x1, y1, x2, y2, score, in the input's pixel frame), ``labels`` (N, int64), ``masks`` (N, 28, 28
  mask probabilities inside each box; pasted back by :func:`mmvit_ext.deployment.runtime.paste_masks`),
  N <= ``test_cfg.rcnn.max_per_img``, by descending score;
- segmentor: ``labels`` (1, H, W, int64) and, on request, ``seg_logits`` (1, classes, H, W);
- classifier: ``scores`` (1, classes), softmax;
- backbone alone (a normalised input, as the backbone sees it): its feature maps.

Ranking and NMS run on what the runtime computes without rounding to a constant: the RPN ranks
anchors by their logits (sigmoid keeps the order; onnxruntime's CPU sigmoid is exactly 0 below
about -18, so ranking its output tied dozens of proposals), the box head by softmax scores.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops
from .rewrites import level_nms, swap_adaptive_pooling

__all__ = ['exportable', 'model_kind', 'output_names', 'Preprocess', 'DetectorEnd2End',
           'SegmentorEnd2End', 'ClassifierEnd2End', 'BackboneOnly']


class Preprocess(nn.Module):
    """A data preprocessor's test-time steps: channel flip, mean / std, bottom-right padding to
    the size divisor with the pad value (mmengine's ``ImgDataPreProcessor`` order)."""

    def __init__(self, pre: nn.Module):
        super().__init__()
        flip = any(bool(getattr(pre, name, False))
                   for name in ('_channel_conversion', 'channel_conversion', 'to_rgb'))
        normalise = getattr(pre, '_enable_normalize', False)
        self.flip = flip
        self.register_buffer('mean', pre.mean.detach().clone().reshape(1, -1, 1, 1) if normalise
                             else torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', pre.std.detach().clone().reshape(1, -1, 1, 1) if normalise
                             else torch.ones(1, 3, 1, 1), persistent=False)
        divisor = getattr(pre, 'pad_size_divisor', 1)
        test_cfg = getattr(pre, 'test_cfg', None) or {}  # mmseg: padding at test time only here
        if test_cfg.get('size') is not None:
            raise NotImplementedError(f'export pads to a size divisor, not to a fixed size '
                                      f'(data_preprocessor.test_cfg.size={test_cfg["size"]})')
        self.divisor = int(test_cfg.get('size_divisor') or divisor or 1)
        self.pad_value = float(getattr(pre, 'pad_value', getattr(pre, 'pad_val', 0)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels[:, [2, 1, 0]] if self.flip else pixels
        x = (x.float() - self.mean) / self.std
        if self.divisor > 1:
            h, w = x.shape[-2:]
            d = self.divisor
            x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d), value=self.pad_value)
        return x


# ----------------------------------------------------------------------------- boxes
def _cut(count, limit: int):
    """Length of ``x[:limit]`` for ``count`` items. A plain ``[:limit]`` of a symbolic count makes
    torch.export fix the program to the example's side of the limit; ``sym_min`` keeps it free.
    Tracing (count a plain int) keeps the constant: ONNX Slice clamps it to the size."""
    return torch.sym_min(count, limit) if isinstance(count, torch.SymInt) else limit


def _check_coder(coder, where: str) -> None:
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    if type(coder) is not DeltaXYWHBBoxCoder:
        raise NotImplementedError(f'export supports DeltaXYWHBBoxCoder in the {where}, got '
                                  f'{type(coder).__name__}')


def decode_boxes(coder, priors, deltas, height, width):
    """``DeltaXYWHBBoxCoder.decode(priors, deltas, max_shape=(height, width))`` for (K, 4) priors
    and deltas, in mmdet's order of operations (the same floats), without its branch on an
    empty input (data-dependent after NMS) and with a height and width that may be traced
    sizes (clipped by min / max instead of ``clamp_`` with Python numbers)."""
    import math
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


def _plain_nms_iou(nms_cfg, where: str) -> float:
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
    _check_coder(rpn.bbox_coder, 'RPN')
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
    dets, _ = level_nms(boxes, logits, level_ids, _plain_nms_iou(cfg.nms, 'RPN'))
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
    dets, keep = level_nms(boxes, scores, labels, _plain_nms_iou(cfg.nms, 'box head'))
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
        return ops.roi_align(feat, rois, layer.output_size[0], layer.output_size[1],
                             layer.spatial_scale, layer.sampling_ratio, layer.aligned)
    if len(feats) == 1:
        return pool(extractor.roi_layers[0], feats[0])
    levels = extractor.map_roi_levels(rois, len(feats))
    out = 0
    for i, feat in enumerate(feats):
        keep = (levels == i).to(feat.dtype)[:, None, None, None]
        out = out + pool(extractor.roi_layers[i], feat) * keep
    return out


def _as_rois(boxes):
    return torch.cat([boxes.new_zeros((boxes.shape[0], 1)), boxes], 1)


class DetectorEnd2End(nn.Module):
    """Mask R-CNN / Cascade Mask R-CNN (or their box-only forms) from pixels to ``dets``,
    ``labels`` and ``masks``: ``model.predict`` of one image with ``rescale=False``."""

    kind = 'detector'

    def __init__(self, model):
        super().__init__()
        from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
        head = getattr(model, 'roi_head', None)
        if getattr(model, 'rpn_head', None) is None or type(head) not in (StandardRoIHead,
                                                                           CascadeRoIHead):
            what = type(head or model).__name__
            raise NotImplementedError(f'detector export covers two-stage detectors with an RPN '
                                      f'and StandardRoIHead / CascadeRoIHead (Mask R-CNN, '
                                      f'Cascade Mask R-CNN, Faster R-CNN), not {what} yet; '
                                      f'export the backbone with --backbone')
        if getattr(head, 'with_shared_head', False):
            raise NotImplementedError('export does not support a shared RoI head yet')
        self.model = model
        self.cascade = isinstance(head, CascadeRoIHead)
        self.preprocess = Preprocess(model.data_preprocessor)
        self.bbox_heads = list(head.bbox_head) if self.cascade else [head.bbox_head]
        self.bbox_extractors = list(head.bbox_roi_extractor) if self.cascade \
            else [head.bbox_roi_extractor]
        for bbox_head in self.bbox_heads:
            _check_coder(bbox_head.bbox_coder, 'box head')
            if bbox_head.custom_cls_channels or getattr(bbox_head, 'custom_activation', False):
                raise NotImplementedError('export supports softmax box classification')
        self.with_mask = head.with_mask
        if self.with_mask:
            mask_heads = list(head.mask_head) if self.cascade else [head.mask_head]
            if head.share_roi_extractor:
                extractors = self.bbox_extractors
            elif self.cascade:
                extractors = list(head.mask_roi_extractor)
            else:
                extractors = [head.mask_roi_extractor]
            self.mask_heads, self.mask_extractors = mask_heads, extractors
        self.test_cfg = head.test_cfg
        # refuse an NMS the graph cannot hold now, not at the first image
        _plain_nms_iou(model.rpn_head.test_cfg.nms, 'RPN')
        _plain_nms_iou(self.test_cfg.nms, 'box head')
        if not model.rpn_head.use_sigmoid_cls:
            raise NotImplementedError('export supports sigmoid RPN classification')

    def _boxes(self, feats, proposals, height, width):
        """(boxes (N, 4 or classes x 4), scores (N, classes + 1)): the box head(s) on the
        proposals; Cascade refines stage by stage and averages the stages' logits."""
        boxes, logits = proposals, []
        for i, bbox_head in enumerate(self.bbox_heads):
            cls_score, bbox_pred = bbox_head(extract_rois(self.bbox_extractors[i], feats,
                                                          _as_rois(boxes)))
            logits.append(cls_score)
            if i < len(self.bbox_heads) - 1:  # regress_by_class with the stage's top class
                if not bbox_head.reg_class_agnostic:
                    label = cls_score[:, :-1].argmax(1) * 4
                    bbox_pred = torch.gather(bbox_pred, 1,
                                             torch.stack([label + j for j in range(4)], 1))
                boxes = decode_boxes(bbox_head.bbox_coder, boxes, bbox_pred, height, width)
        last = self.bbox_heads[-1]
        cls_score = logits[0] if len(logits) == 1 else sum(logits) / float(len(logits))
        scores = F.softmax(cls_score, dim=-1)
        per_roi = 1 if last.reg_class_agnostic else last.num_classes
        priors = boxes[:, None].expand(boxes.shape[0], per_roi, 4).reshape(-1, 4)
        decoded = decode_boxes(last.bbox_coder, priors, bbox_pred.reshape(-1, 4), height, width)
        return decoded.reshape(boxes.shape[0], -1), scores

    def _masks(self, feats, dets, labels):
        """(N, 28, 28) probabilities of each detection's class (Cascade: the stages' mean)."""
        rois = _as_rois(dets[:, :4])
        probs = []
        for extractor, mask_head in zip(self.mask_extractors, self.mask_heads):
            probs.append(mask_head(extract_rois(extractor, feats, rois)).sigmoid())
        prob = probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)
        if self.mask_heads[-1].class_agnostic:
            return prob[:, 0]
        index = labels[:, None, None, None].expand(-1, 1, prob.shape[2], prob.shape[3])
        return torch.gather(prob, 1, index)[:, 0]

    def forward(self, pixels: torch.Tensor):
        if pixels.shape[0] != 1:
            raise ValueError(f'detector export takes one image (batch 1), got batch '
                             f'{pixels.shape[0]}')
        height, width = pixels.shape[2], pixels.shape[3]
        feats = self.model.extract_feat(self.preprocess(pixels))
        proposals = rpn_proposals(self.model.rpn_head, feats, height, width)
        boxes, scores = self._boxes(feats, proposals, height, width)
        dets, labels = multiclass_nms(boxes, scores, self.test_cfg)
        if not self.with_mask:
            return dets, labels
        return dets, labels, self._masks(feats, dets, labels)


class SegmentorEnd2End(nn.Module):
    """mmseg's ``EncoderDecoder.predict`` of one image at its own size (whole inference):
    ``labels`` (1, H, W), and ``seg_logits`` (1, classes, H, W) with ``with_logits``."""

    kind = 'segmentor'

    def __init__(self, model, with_logits: bool = False):
        super().__init__()
        mode = (model.test_cfg or {}).get('mode', 'whole')
        if mode != 'whole':
            raise NotImplementedError(f"export supports test_cfg.mode='whole', got '{mode}' "
                                      f"(set model.test_cfg.mode='whole' to export)")
        if model.out_channels == 1:
            raise NotImplementedError('export supports multi-class segmentation heads '
                                      '(out_channels > 1)')
        self.model, self.with_logits = model, with_logits
        self.preprocess = Preprocess(model.data_preprocessor)

    def forward(self, pixels):
        height, width = pixels.shape[2], pixels.shape[3]
        head = self.model.decode_head
        logits = head(self.model.extract_feat(self.preprocess(pixels)))
        logits = F.interpolate(logits, size=(height, width), mode='bilinear',
                               align_corners=head.align_corners)
        labels = logits.argmax(1)
        return (labels, logits) if self.with_logits else labels


class ClassifierEnd2End(nn.Module):
    """mmpretrain's ``ImageClassifier.predict``: softmax ``scores`` (1, classes)."""

    kind = 'classifier'

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.preprocess = Preprocess(model.data_preprocessor)

    def forward(self, pixels):
        return F.softmax(self.model(self.preprocess(pixels), mode='tensor'), dim=1)


class BackboneOnly(nn.Module):
    """The backbone alone, on a normalised input: its tuple of feature maps."""

    kind = 'backbone'

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, img):
        return self.model.backbone(img)


def model_kind(model, scope: str) -> str:
    return {'mmpretrain': 'classifier', 'mmseg': 'segmentor'}.get(scope, 'detector')


def exportable(model, scope: str, whole: bool = True, seg_logits: bool = False) -> nn.Module:
    """The ``input -> results`` module of a built model (see the module doc), in eval mode;
    adaptive pooling is made exportable in place. Trace / export it inside
    :func:`mmvit_ext.deployment.export_rewrites`."""
    kind = model_kind(model, scope) if whole or scope == 'mmpretrain' else 'backbone'
    swap_adaptive_pooling(model)
    module = {'classifier': ClassifierEnd2End, 'detector': DetectorEnd2End,
              'backbone': BackboneOnly}.get(kind)
    module = SegmentorEnd2End(model, seg_logits) if kind == 'segmentor' else module(model)
    return module.eval()


def output_names(module: nn.Module, count: int) -> List[str]:
    """The exported file's output names (the contract in docs/en/deployment.md)."""
    if module.kind == 'detector':
        return ['dets', 'labels', 'masks'][:count]
    if module.kind == 'segmentor':
        return ['labels', 'seg_logits'][:count]
    if module.kind == 'classifier':
        return ['scores']
    return [f'feat{i}' for i in range(count)]


def dynamic_axes(module: nn.Module, names: Sequence[str]) -> dict:
    """TorchScript exporter's ``dynamic_axes``: free height and width, and free counts."""
    axes = {'input': {2: 'height', 3: 'width'}}
    for name in names:
        if module.kind == 'detector':
            axes[name] = {0: 'num_dets'}
        elif name in ('labels', 'seg_logits'):
            axes[name] = {2: 'height', 3: 'width'} if name == 'seg_logits' else \
                {1: 'height', 2: 'width'}
        elif name.startswith('feat'):
            axes[name] = {2: f'{name}_height', 3: f'{name}_width'}
    return axes


def describe(module: nn.Module) -> Optional[str]:
    """One phrase for the tool's first line."""
    if module.kind == 'detector':
        return 'Cascade Mask R-CNN' if module.cascade else 'Mask R-CNN'
    return None
