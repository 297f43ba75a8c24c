"""Where a checkpoint keeps its weights, and which of its keys belong to a part of the model.
Pure functions on dicts of tensors."""
from collections import OrderedDict
from typing import Dict, Mapping, Sequence

import torch

__all__ = ['DEFAULT_STATE_KEYS', 'unwrap_state_dict', 'strip_prefix', 'sub_state_dict',
           'backbone_part', 'tensors_only']

# Where training scripts keep the weights, in the order we look for them.
DEFAULT_STATE_KEYS = ('state_dict', 'model', 'model_ema', 'state_dict_ema')


def unwrap_state_dict(checkpoint: Mapping,
                      keys: Sequence[str] = DEFAULT_STATE_KEYS) -> Dict:
    """Return the weight dict of a checkpoint: the first of ``keys`` present, else the dict itself.

    A bare state dict (every value a tensor) is returned as is.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'a checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in keys:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    tensors = {k: v for k, v in checkpoint.items() if torch.is_tensor(v)}
    if not tensors:
        raise KeyError(
            'no weights found in the checkpoint: none of the keys '
            f'{list(keys)} holds a dict, and it holds no tensors at top level '
            f'(its keys: {sorted(checkpoint)[:20]})')
    return dict(checkpoint)


def strip_prefix(state_dict: Mapping, prefix: str) -> Dict:
    """Remove ``prefix`` from keys that have it; other keys are kept unchanged."""
    n = len(prefix)
    return OrderedDict((k[n:] if k.startswith(prefix) else k, v)
                       for k, v in state_dict.items())


def sub_state_dict(state_dict: Mapping, prefix: str) -> Dict:
    """The entries under ``prefix`` (``'backbone.'``), with the prefix removed; the others
    dropped."""
    n = len(prefix)
    return OrderedDict((k[n:], v) for k, v in state_dict.items() if k.startswith(prefix))


def backbone_part(state_dict: Mapping) -> Dict:
    """The backbone's weights of a checkpoint's state dict: ``module.`` (a DDP wrapper) removed,
    then the ``backbone.*`` entries of a detector / segmentor / classifier file, or the dict
    itself when no key has that prefix (a backbone file)."""
    weights = strip_prefix(state_dict, 'module.')
    if any(k.startswith('backbone.') for k in weights):
        return sub_state_dict(weights, 'backbone.')
    return weights


def tensors_only(state_dict: Mapping) -> Dict:
    """Keep tensor entries (e.g. drop timm's non-tensor extras), cloned and contiguous."""
    return OrderedDict((k, v.detach().clone().contiguous())
                       for k, v in state_dict.items() if torch.is_tensor(v))
