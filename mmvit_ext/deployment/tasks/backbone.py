"""The backbone alone, on a normalised input (as the backbone sees it, no padding): its tuple
of feature maps ``feat0``, ``feat1``, ... The file is checked against eager PyTorch within
``rtol`` (or at a routing near-tie).
"""
from typing import Dict, List

import torch.nn as nn

from ..preprocess import Preprocess
from .base import Task

__all__ = ['BackboneTask', 'BackboneOnly', 'TASK']


class BackboneOnly(nn.Module):
    """The backbone alone, on a normalised input: its tuple of feature maps."""

    def __init__(self, model):
        super().__init__()
        self.task = TASK
        self.model = model

    def forward(self, img):
        return self.model.backbone(img)


class BackboneTask(Task):
    name = 'backbone'
    input_kind = 'normalised'

    def module(self, model, **options) -> nn.Module:
        return BackboneOnly(model)

    def output_names(self, count: int) -> List[str]:
        return [f'feat{i}' for i in range(count)]

    def dynamic_axes(self, names) -> Dict:
        axes = super().dynamic_axes(names)
        for name in names:
            axes[name] = {2: f'{name}_height', 3: f'{name}_width'}
        return axes

    def input_of(self, module, x):
        """The data preprocessor's mean / std (no padding): what the backbone sees."""
        pre = Preprocess(module.model.data_preprocessor)
        pre.divisor = 1
        return pre(x)


TASK = BackboneTask()
