"""Which backbone a state dict holds, and which one a model builds, in words.

Used by the checkpoint checks: a checkpoint of another family or variant is reported as such
("holds a DGT-T backbone; the config builds DilateFormer-S") rather than as a list of keys.
Every zoo variant's key/shape signature comes from building it on the 'meta' device (no
memory, a few ms), once per process.
"""
import functools
import re
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ['identify_backbone', 'describe_backbone_module', 'backbone_state_dict']

# family class -> (display name, {zoo arch: variant suffix})
DISPLAY = {
    'DilateFormer': ('DilateFormer', {'tiny': 'T', 'small': 'S', 'base': 'B'}),
    'SGFormer': ('SG-Former', {'small': 'S', 'medium': 'M', 'base': 'B'}),
    'QnAViT': ('QnA-ViT', {'tiny': 'tiny', 'tiny_7x7': 'tiny_7x7', 'small': 'small',
                           'base': 'base'}),
    'DGT': ('DGT', {'tiny': 'T', 'small': 'S', 'base': 'B'}),
}
_OUTPUT_NORM = re.compile(r'^norm\d\.')


def _families() -> Dict[str, type]:
    from .backbones import DGT, DilateFormer, QnAViT, SGFormer
    return dict(DilateFormer=DilateFormer, SGFormer=SGFormer, QnAViT=QnAViT, DGT=DGT)


@functools.lru_cache(maxsize=None)
def _variant_shapes(family: str, arch: str) -> Dict[str, Tuple[int, ...]]:
    with torch.device('meta'):
        model = _families()[family](arch=arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _pattern(key: str) -> str:
    return re.sub(r'\.\d+(?=\.|$)', '.#', key)


@functools.lru_cache(maxsize=None)
def _family_patterns(family: str) -> frozenset:
    return frozenset(_pattern(k) for arch in DISPLAY[family][1]
                     for k in _variant_shapes(family, arch))


def backbone_state_dict(state_dict: Mapping) -> Dict:
    """The backbone part of a checkpoint's weights: ``backbone.*`` keys stripped of the prefix
    (detector / segmentor / classifier files), else the dict itself; ``module.`` removed."""
    weights = {(k[7:] if k.startswith('module.') else k): v for k, v in state_dict.items()}
    if any(k.startswith('backbone.') for k in weights):
        return {k[9:]: v for k, v in weights.items() if k.startswith('backbone.')}
    return weights


def identify_backbone(state_dict: Mapping) -> Optional[str]:
    """'DGT-T', 'SG-Former-S', 'a DilateFormer backbone of a custom arch', 'an mmdet
    SwinTransformer backbone' ... or None when the keys look like none of them."""
    sd = {k: v for k, v in backbone_state_dict(state_dict).items() if torch.is_tensor(v)}
    if not sd:
        return None
    if any('.attn.w_msa.' in k for k in sd):
        return 'an mmdet/mmseg SwinTransformer backbone'
    patterns = {_pattern(k) for k in sd if not k.startswith('head.')}
    if not patterns:
        return None
    scores = {f: len(patterns & _family_patterns(f)) / len(patterns) for f in DISPLAY}
    family = max(scores, key=scores.get)
    if scores[family] < 0.9:
        return None
    name, variants = DISPLAY[family]
    core = {k: tuple(v.shape) for k, v in sd.items()
            if not _OUTPUT_NORM.match(k) and not k.startswith('head.')}
    for arch, suffix in variants.items():
        ref = {k: s for k, s in _variant_shapes(family, arch).items() if not _OUTPUT_NORM.match(k)}
        if ref == core:
            return f'{name}-{suffix}'
    return f'a {name} backbone of a custom arch'


def describe_backbone_module(model: nn.Module) -> Optional[str]:
    """The backbone a built model holds ('DilateFormer-S', 'DGT (custom arch)', or the class
    name of a backbone that is not ours); None when there is no backbone."""
    while hasattr(model, 'module') and isinstance(model.module, nn.Module):
        model = model.module  # DDP and TTA wrappers
    backbone = getattr(model, 'backbone', model)
    family = type(backbone).__name__
    if family not in DISPLAY:
        return family if backbone is not model else None
    name, variants = DISPLAY[family]
    arch = getattr(backbone, 'arch_name', 'custom')
    return f'{name}-{variants[arch]}' if arch in variants else f'{name} (custom arch)'
