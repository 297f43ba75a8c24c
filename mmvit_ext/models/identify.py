"""Which backbone a state dict holds, and which one a model builds, in words.

Used by the checkpoint checks (through :meth:`PyramidBackbone.identify_weights`): a checkpoint of
another family or variant is reported as such ("holds a DGT-T backbone; the config builds
DilateFormer-S") rather than as a list of keys. Every zoo variant's key/shape signature comes
from building it on the 'meta' device (no memory, a few ms), once per process. The families are
looked up in the registry by name, so this module imports no backbone.
"""
import functools
import re
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..checkpoints import backbone_part, check_finite, strip_prefix, unwrap_model
from .registry import MODELS

__all__ = ['identify_backbone', 'describe_backbone', 'describe_backbone_module', 'DISPLAY',
           'refuse_nonfinite_checkpoints_of_ours']

# family class -> (display name, {zoo arch: variant suffix})
DISPLAY = {
    'DilateFormer': ('DilateFormer', {'tiny': 'T', 'small': 'S', 'base': 'B'}),
    'SGFormer': ('SG-Former', {'small': 'S', 'medium': 'M', 'base': 'B'}),
    'QnAViT': ('QnA-ViT', {'tiny': 'tiny', 'tiny_7x7': 'tiny_7x7', 'small': 'small',
                           'base': 'base'}),
    'DGT': ('DGT', {'tiny': 'T', 'small': 'S', 'base': 'B'}),
}
_OUTPUT_NORM = re.compile(r'^norm\d\.')


@functools.lru_cache(maxsize=None)
def _variant_shapes(family: str, arch: str) -> Dict[str, Tuple[int, ...]]:
    with torch.device('meta'):
        model = MODELS.get(family)(arch=arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _pattern(key: str) -> str:
    return re.sub(r'\.\d+(?=\.|$)', '.#', key)


@functools.lru_cache(maxsize=None)
def _family_patterns(family: str) -> frozenset:
    return frozenset(_pattern(k) for arch in DISPLAY[family][1]
                     for k in _variant_shapes(family, arch))


def identify_backbone(state_dict: Mapping) -> Optional[str]:
    """'DGT-T', 'SG-Former-S', 'a DilateFormer backbone of a custom arch', 'an mmdet
    SwinTransformer backbone' ... or None when the keys look like none of them."""
    sd = {k: v for k, v in backbone_part(state_dict).items() if torch.is_tensor(v)}
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


def describe_backbone(backbone: nn.Module) -> str:
    """'DilateFormer-S', 'DGT (custom arch)', or the class name of a backbone not ours."""
    family = type(backbone).__name__
    if family not in DISPLAY:
        return family
    name, variants = DISPLAY[family]
    arch = getattr(backbone, 'arch_name', 'custom')
    return f'{name}-{variants[arch]}' if arch in variants else f'{name} (custom arch)'


def describe_backbone_module(model: nn.Module) -> Optional[str]:
    """The backbone a built model holds, in words; None when there is no backbone."""
    model = unwrap_model(model)
    backbone = getattr(model, 'backbone', model)
    if type(backbone).__name__ not in DISPLAY and backbone is model:
        return None
    return describe_backbone(backbone)


def refuse_nonfinite_checkpoints_of_ours(checkpoint, filename: str) -> None:
    """A load check (:func:`mmvit_ext.checkpoints.loader_schemes.register_load_check`): a
    checkpoint holding one of our backbones must be finite everywhere (neck, heads, classifier
    too), as ``tools/test.py`` requires; any other checkpoint is left alone."""
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, Mapping) \
        else None
    if not isinstance(state_dict, Mapping):
        return
    tensors = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
    held = identify_backbone(tensors) if tensors else None
    if held and 'Swin' not in held:
        check_finite(strip_prefix(tensors, 'module.'), f'checkpoint {filename}')
