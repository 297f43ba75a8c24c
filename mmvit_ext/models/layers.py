"""Small building blocks shared by the backbones."""
from typing import Dict, Mapping, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer

__all__ = ['DropPath', 'Mlp', 'resolve_arch']


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
    """Linear -> activation -> dropout -> Linear -> dropout, on the last dim."""

    def __init__(self, in_features: int, hidden_features: int,
                 act_cfg: Dict = dict(type='GELU'), drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def resolve_arch(arch: Union[str, Mapping], zoo: Mapping[str, Dict],
                 aliases: Mapping[str, str], required: Sequence[str],
                 name: str) -> Dict:
    """Return the arch settings for a zoo name/alias or a custom dict, with clear errors."""
    if isinstance(arch, str):
        key = aliases.get(arch.lower(), arch.lower())
        if key not in zoo:
            choices = sorted(set(zoo) | set(aliases))
            raise ValueError(f'unknown {name} arch {arch!r}; choose one of {choices} '
                             f'or pass a dict with keys {list(required)}')
        return dict(zoo[key])
    if isinstance(arch, Mapping):
        missing = [k for k in required if k not in arch]
        if missing:
            raise ValueError(f'custom {name} arch dict lacks {missing}; it needs '
                             f'{list(required)}, got {dict(arch)}')
        return dict(arch)
    raise TypeError(f'{name} arch must be a str or dict, got {type(arch).__name__}')
