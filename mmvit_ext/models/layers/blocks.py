"""Small building blocks shared by the backbones."""
import math
from typing import Dict, Iterable, Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from torch.nn.modules.batchnorm import _BatchNorm

from .gelu_linear import gelu_linear
from .layer_norm_linear import layer_norm_linear

__all__ = ['DropPath', 'Mlp', 'freeze', 'vit_init_']


class DropPath(nn.Module):
    """Stochastic depth per sample (identity when ``drop_prob == 0`` or in eval mode)."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob:.3f}'


class Mlp(nn.Module):
    """Linear -> activation -> dropout -> Linear -> dropout, on the last dim.

    ``forward(x, norm)`` applies ``norm`` first (a pre-norm block's LayerNorm). A GELU with no
    dropout between runs through :func:`gelu_linear`, and the norm through
    :func:`layer_norm_linear`: their memory-lean forms keep one activation of each width for
    backward instead of two."""

    def __init__(self, in_features: int, hidden_features: int,
                 act_cfg: Dict = dict(type='GELU'), drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x, norm: Optional[nn.Module] = None):
        h = self.fc1(x) if norm is None else layer_norm_linear(x, norm, self.fc1)
        if isinstance(self.act, nn.GELU) and not (self.training and self.drop.p > 0):
            return self.drop(gelu_linear(h, self.act, self.fc2))
        return self.drop(self.fc2(self.drop(self.act(h))))


def freeze(modules: Iterable[nn.Module]) -> None:
    """Eval mode and no gradients for ``modules`` (``frozen_stages``)."""
    for m in modules:
        m.eval()
        for p in m.parameters():
            p.requires_grad = False


def vit_init_(model: nn.Module) -> None:
    """timm-style initialisation: trunc-normal(0.02) Linear weights, fan-out normal convs, zero
    biases, unit norms."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm, _BatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
