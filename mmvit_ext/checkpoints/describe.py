"""Words for what a checkpoint holds: short key lists, and which backbone it is when the model
can tell (a backbone that has ``identify_weights`` and ``describe``, as ours do)."""
from typing import Mapping, Optional

import torch.nn as nn

__all__ = ['short_list', 'unwrap_model', 'which_backbones', 'backbone_phrase']


def short_list(keys, n: int = 12) -> str:
    """The first ``n`` of ``keys`` sorted, and how many more."""
    keys = sorted(keys)
    more = f' ... (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / TTA wrappers (anything with a ``module`` submodule)."""
    while isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module
    return model


def backbone_phrase(name: str) -> str:
    """'DGT-T' -> 'a DGT-T backbone'; descriptions that already read as a phrase unchanged."""
    return name if name.startswith(('a ', 'an ')) else f'a {name} backbone'


def _backbone(model: nn.Module) -> Optional[nn.Module]:
    model = unwrap_model(model)
    backbone = getattr(model, 'backbone', model)
    return backbone if callable(getattr(backbone, 'identify_weights', None)) else None


def which_backbones(model: nn.Module, state_dict: Mapping) -> str:
    """' It holds a DGT-T backbone; the config builds DilateFormer-S.' when both are known and
    differ, ' It holds ...' when only the checkpoint is, else ''."""
    backbone = _backbone(model)
    if backbone is None:
        return ''
    held, built = backbone.identify_weights(state_dict), backbone.describe()
    if not held:
        return ''
    hint = getattr(backbone, 'arch_hint', lambda sd: '')(state_dict)
    if built and held != built and not held.endswith(built):
        return f' It holds {backbone_phrase(held)}; the config builds {built}.{hint}'
    return f' It holds {backbone_phrase(held)}.{hint}'
