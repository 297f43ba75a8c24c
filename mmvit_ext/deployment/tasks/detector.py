"""Detectors (Mask R-CNN, Cascade Mask R-CNN; Faster R-CNN without masks) from pixels to
``dets`` (N, 5: x1, y1, x2, y2, score, in the input's pixel frame), ``labels`` (N, int64) and
``masks`` (N, 28, 28 mask probabilities inside each box), N <= ``test_cfg.rcnn.max_per_img``,
by descending score: ``model.predict`` of one image with ``rescale=False``, the config's score
threshold, NMS and ``max_per_img`` inside. The file is checked by its final detections against
mmdet's ``predict`` in the original image's frame.
"""
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..compare import match_detections, max_relative_differences
from ..detection_graph import (as_rois, check_coder, decode_boxes, extract_rois, multiclass_nms,
                               plain_nms_iou, rpn_proposals)
from ..preprocess import Preprocess
from .base import Task

__all__ = ['DetectorTask', 'DetectorEnd2End', 'paste_masks', 'detections_to_sample', 'TASK']


class DetectorEnd2End(nn.Module):
    """Mask R-CNN / Cascade Mask R-CNN (or their box-only forms) from pixels to ``dets``,
    ``labels`` and ``masks``: ``model.predict`` of one image with ``rescale=False``."""

    def __init__(self, model):
        super().__init__()
        self.task = TASK
        from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
        head = getattr(model, 'roi_head', None)
        if getattr(model, 'rpn_head', None) is None or \
                type(head) not in (StandardRoIHead, CascadeRoIHead):
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
            check_coder(bbox_head.bbox_coder, 'box head')
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
        plain_nms_iou(model.rpn_head.test_cfg.nms, 'RPN')
        plain_nms_iou(self.test_cfg.nms, 'box head')
        if not model.rpn_head.use_sigmoid_cls:
            raise NotImplementedError('export supports sigmoid RPN classification')

    def _boxes(self, feats, proposals, height, width):
        """(boxes (N, 4 or classes x 4), scores (N, classes + 1)): the box head(s) on the
        proposals; Cascade refines stage by stage and averages the stages' logits."""
        boxes, logits = proposals, []
        for i, bbox_head in enumerate(self.bbox_heads):
            cls_score, bbox_pred = bbox_head(extract_rois(self.bbox_extractors[i], feats,
                                                          as_rois(boxes)))
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
        rois = as_rois(dets[:, :4])
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


def paste_masks(probs, boxes, height: int, width: int, threshold: float = 0.5) -> torch.Tensor:
    """(N, height, width) bool masks from (N, 28, 28) box-relative probabilities and (N, 4)
    boxes in the same frame as (height, width): mmdet's ``FCNMaskHead`` paste-back (bilinear
    ``grid_sample`` of each mask over its box, align_corners=False, zero outside), one box at a
    time as mmdet does on the CPU, then ``>= threshold``."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    probs, boxes = torch.as_tensor(probs).float(), torch.as_tensor(boxes).float()
    out = torch.zeros((len(probs), height, width), dtype=torch.bool)
    for i in range(len(probs)):
        chunk, where = _do_paste_mask(probs[i:i + 1, None], boxes[i:i + 1], height, width,
                                      skip_empty=True)
        out[(slice(i, i + 1), ) + where] = chunk >= threshold
    return out


def detections_to_sample(dets, labels, masks, meta: dict, mask_thr: float = 0.5):
    """A ``DetDataSample`` in the original image's frame from the graph's outputs in the input's
    frame: boxes divided by ``meta['scale_factor']`` (w, h), masks pasted at
    ``meta['ori_shape']`` (what mmdet's ``predict(rescale=True)`` returns)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    dets = torch.as_tensor(np.asarray(dets)).float().reshape(-1, 5)
    sx, sy = meta.get('scale_factor', (1., 1.))
    boxes = dets[:, :4] / dets.new_tensor([sx, sy, sx, sy])
    inst = InstanceData(bboxes=boxes, scores=dets[:, 4],
                        labels=torch.as_tensor(np.asarray(labels)).long().reshape(-1))
    if masks is not None:
        h, w = meta['ori_shape'][:2]
        inst.masks = paste_masks(np.asarray(masks), boxes, int(h), int(w), mask_thr)
    sample = DetDataSample(metainfo=meta)
    sample.pred_instances = inst
    return sample


class DetectorTask(Task):
    name = 'detector'
    scope = 'mmdet'
    checked_with_random_weights = False

    def module(self, model, **options) -> nn.Module:
        return DetectorEnd2End(model)

    def describe(self, module) -> str:
        return 'Cascade Mask R-CNN' if module.cascade else 'Mask R-CNN'

    def routes(self, module) -> bool:
        return True  # top-k and NMS

    def output_names(self, count: int) -> List[str]:
        return ['dets', 'labels', 'masks'][:count]

    def dynamic_axes(self, names) -> Dict:
        return dict(super().dynamic_axes(names), **{name: {0: 'num_dets'} for name in names})

    def metadata(self, module) -> Dict:
        return dict(mask_thr_binary=float(module.test_cfg.get('mask_thr_binary', 0.5)),
                    score_thr=float(module.test_cfg.score_thr),
                    max_per_img=int(module.test_cfg.max_per_img))

    def check_file_fields(self, meta):
        for key in ('mask_thr_binary', 'score_thr'):
            value = meta.get(key, 0.5)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value <= 1:  # NaN fails the range too
                return f'{key} must be a number in [0, 1], got {str(value)[:40]!r}'
        limit = meta.get('max_per_img', 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 100000:
            return f'max_per_img must be a whole number in 1..100000, got {str(limit)[:40]!r}'
        return None

    def sample_type(self):
        from mmdet.structures import DetDataSample
        return DetDataSample

    def check(self, module, model, got, eager, x, pixels, image, shape, rtol) -> Dict:
        raw = max_relative_differences(got, eager)
        size = f'{shape[0]}x{shape[1]}'
        h0, w0 = image.shape[:2]
        meta = dict(img_shape=tuple(shape), ori_shape=(h0, w0),
                    scale_factor=(shape[1] / w0, shape[0] / h0))
        ref = self.reference_sample(model, pixels, meta)
        names = self.output_names(len(got))
        mine = self.to_sample(dict(zip(names, got)), meta, self.metadata(module))
        m = match_detections(mine, ref, module.test_cfg.score_thr, module.test_cfg.max_per_img,
                             plain_nms_iou(module.test_cfg.nms, 'box head'))
        line = (f'detections at {size} vs mmdet predict: {m["matched"]} matched of '
                f'{m["reference"]}, {m["missing"]} missing, {m["extra"]} extra '
                f'({m["at_cut"]} of them at the score cut, {m["nms_swaps"]} pairs swapped at '
                f'an NMS near-tie); worst box IoU '
                f'{m["worst_box_iou"]:.4f}, mask IoU {m["worst_mask_iou"]:.4f}, score gap '
                f'{m["worst_score_gap"]:.1e}')
        return dict(ok=m['ok'], line=line, raw=raw, match=m, size=size)

    def select(self, outputs, score_thr):
        if score_thr is None:
            return outputs
        keep = np.asarray(outputs['dets'])[:, 4] >= score_thr
        return {k: (np.asarray(v)[keep] if k in ('dets', 'labels', 'masks') else v)
                for k, v in outputs.items()}

    def to_sample(self, outputs, meta, file_meta):
        return detections_to_sample(outputs['dets'], outputs['labels'], outputs.get('masks'),
                                    meta, file_meta.get('mask_thr_binary', 0.5))

    def summary(self, sample, name, score_thr) -> List[str]:
        inst = sample.pred_instances
        keep = inst.scores >= score_thr
        lines = [f'{int(keep.sum())} detections with score >= {score_thr}']
        for box, score, label in zip(inst.bboxes[keep], inst.scores[keep], inst.labels[keep]):
            x1, y1, x2, y2 = (float(v) for v in box)
            lines.append(f'  {name(int(label))} {float(score):.3f} [{x1:.1f}, {y1:.1f}, '
                         f'{x2:.1f}, {y2:.1f}]')
        return lines

    def show(self, sample, rgb, out_file, dataset_meta, name, score_thr) -> None:
        from mmdet.visualization import DetLocalVisualizer
        vis = DetLocalVisualizer(name=name)
        vis.dataset_meta = dataset_meta
        vis.add_datasample('result', rgb, sample, draw_gt=False, pred_score_thr=score_thr,
                           out_file=out_file)


TASK = DetectorTask()
