"""Segmentors (UperNet, Semantic FPN; whole-image inference) from pixels to ``labels``
(1, H, W, int64) and, on request, ``seg_logits`` (1, classes, H, W): mmseg's
``EncoderDecoder.predict`` of one image at its own size. The file is checked by its label map
against mmseg's ``predict``: at least 99.9% of the pixels agree.
"""
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..compare import LABEL_AGREEMENT, label_agreement, max_relative_differences
from ..preprocess import Preprocess
from .base import Task

__all__ = ['SegmentorTask', 'SegmentorEnd2End', 'segmentation_to_sample', 'TASK']


class SegmentorEnd2End(nn.Module):
    """mmseg's ``EncoderDecoder.predict`` of one image at its own size (whole inference):
    ``labels`` (1, H, W), and ``seg_logits`` (1, classes, H, W) with ``with_logits``."""

    def __init__(self, model, with_logits: bool = False):
        super().__init__()
        self.task = TASK
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


def segmentation_to_sample(labels, logits, meta: dict):
    """A ``SegDataSample`` at the original size: the graph's labels at the input size, resized
    to ``meta['ori_shape']`` through the logits when the file has them (mmseg's own order:
    bilinear logits, then argmax), else by nearest neighbour."""
    import torch.nn.functional as F
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    h, w = meta.get('ori_shape', np.asarray(labels).shape[-2:])[:2]
    sample = SegDataSample(metainfo=meta)
    if logits is not None:
        t = torch.from_numpy(np.asarray(logits))
        if tuple(t.shape[-2:]) != (h, w):
            t = F.interpolate(t, size=(h, w), mode='bilinear', align_corners=False)
        sample.seg_logits = PixelData(data=t[0])
        label = t[0].argmax(0, keepdim=True)
    else:
        label = torch.from_numpy(np.asarray(labels)).long()
        if tuple(label.shape[-2:]) != (h, w):
            label = F.interpolate(label[None].float(), size=(h, w), mode='nearest')[0].long()
    sample.pred_sem_seg = PixelData(data=label.reshape(1, h, w))
    return sample


class SegmentorTask(Task):
    name = 'segmentor'
    scope = 'mmseg'

    def module(self, model, seg_logits: bool = False, **options) -> nn.Module:
        return SegmentorEnd2End(model, seg_logits)

    def output_names(self, count: int) -> List[str]:
        return ['labels', 'seg_logits'][:count]

    def dynamic_axes(self, names) -> Dict:
        axes = super().dynamic_axes(names)
        if 'labels' in names:
            axes['labels'] = {1: 'height', 2: 'width'}
        if 'seg_logits' in names:
            axes['seg_logits'] = {2: 'height', 3: 'width'}
        return axes

    def sample_type(self):
        from mmseg.structures import SegDataSample
        return SegDataSample

    def check(self, module, model, got, eager, x, pixels, image, shape, rtol) -> Dict:
        raw = max_relative_differences(got, eager)
        size = f'{shape[0]}x{shape[1]}'
        meta = dict(img_shape=tuple(shape), ori_shape=tuple(shape))
        ref = self.reference_sample(model, pixels, meta)
        agree = label_agreement(got[0], ref.pred_sem_seg.data)
        line = (f'label map at {size} vs mmseg predict: {agree * 100:.3f}% of pixels agree '
                f'(>= {LABEL_AGREEMENT * 100:.1f}% required)')
        return dict(ok=agree >= LABEL_AGREEMENT, line=line, raw=raw, agreement=agree, size=size)

    def to_sample(self, outputs, meta, file_meta):
        return segmentation_to_sample(outputs['labels'], outputs.get('seg_logits'), meta)

    def summary(self, sample, name, score_thr) -> List[str]:
        labels, counts = torch.unique(sample.pred_sem_seg.data, return_counts=True)
        total = int(counts.sum())
        return ['label map ' + 'x'.join(str(s) for s in sample.pred_sem_seg.shape) + ': ' +
                ', '.join(f'{name(int(lab))} {100 * int(c) / total:.1f}%'
                          for lab, c in zip(labels, counts))]

    def show(self, sample, rgb, out_file, dataset_meta, name, score_thr) -> None:
        from mmseg.visualization import SegLocalVisualizer
        vis = SegLocalVisualizer(name=name, alpha=0.5)
        vis.dataset_meta = dataset_meta
        vis.add_datasample('result', rgb, sample, draw_gt=False, out_file=out_file)


TASK = SegmentorTask()
