"""Classifiers (mmpretrain's ``ImageClassifier``) from pixels to softmax ``scores``
(1, classes). The file is checked against eager PyTorch and against mmpretrain's ``predict``
scores, within ``rtol`` (or at a routing near-tie).
"""
from typing import List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..compare import max_relative_differences
from ..preprocess import Preprocess
from .base import Task

__all__ = ['ClassifierTask', 'ClassifierEnd2End', 'TASK']


class ClassifierEnd2End(nn.Module):
    """mmpretrain's ``ImageClassifier.predict``: softmax ``scores`` (1, classes)."""

    def __init__(self, model):
        super().__init__()
        self.task = TASK
        self.model = model
        self.preprocess = Preprocess(model.data_preprocessor)

    def forward(self, pixels):
        return F.softmax(self.model(self.preprocess(pixels), mode='tensor'), dim=1)


class ClassifierTask(Task):
    name = 'classifier'
    scope = 'mmpretrain'

    def module(self, model, **options) -> nn.Module:
        return ClassifierEnd2End(model)

    def output_names(self, count: int) -> List[str]:
        return ['scores']

    def sample_type(self):
        from mmpretrain.structures import DataSample
        return DataSample

    def extra_differences(self, model, got, pixels, shape) -> List[float]:
        meta = dict(img_shape=tuple(shape), ori_shape=tuple(shape))
        ref = self.reference_sample(model, pixels, meta)
        return max_relative_differences([got[0][0]], [ref.pred_score])

    def to_sample(self, outputs, meta, file_meta):
        from mmpretrain.structures import DataSample
        scores = torch.from_numpy(np.asarray(outputs['scores'])[0])
        return DataSample(metainfo=meta).set_pred_score(scores).set_pred_label(
            scores.argmax(keepdim=True))

    def summary(self, sample, name, score_thr) -> List[str]:
        top = sample.pred_score.topk(min(5, len(sample.pred_score)))
        return ['top scores: ' + ', '.join(f'{name(int(i))} {float(s):.3f}'
                                           for s, i in zip(top.values, top.indices))]

    def show(self, sample, rgb, out_file, dataset_meta, name, score_thr) -> None:
        from mmpretrain.visualization import UniversalVisualizer
        vis = UniversalVisualizer(name=name)
        vis.visualize_cls(rgb, sample, classes=dataset_meta['classes'] or None,
                          out_file=out_file)


TASK = ClassifierTask()
