"""Loading pretrained weights into a backbone, strictly.

mmengine's ``load_checkpoint`` unwraps only ``state_dict`` and loads with ``strict=False``, logging
mismatches as warnings: a DeiT-style ``{'model': ...}`` file then loads *nothing* and training
silently starts from scratch. Here every key must match, unless it is listed as allowed to be
missing (e.g. per-output norms that an ImageNet model does not have); anything else is an error
naming the keys, and saying in words which backbone the file holds when it is one of ours.
NaN / Inf weights are an error too (a file saved after training diverged).
"""
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .models.converters.common import (DEFAULT_STATE_KEYS, strip_prefix,
                                       unwrap_state_dict)
from .utils import safe_load

__all__ = ['CheckpointMismatchError', 'NonFiniteCheckpointError', 'load_pretrained',
           'check_state_dict', 'nonfinite_tensors', 'check_finite', 'mismatch_summary',
           'backbone_phrase']


class CheckpointMismatchError(KeyError):
    """Keys or shapes of a checkpoint do not match the model."""

    def __str__(self):  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ''


class NonFiniteCheckpointError(ValueError):
    """A checkpoint holds NaN or Inf weights."""


def nonfinite_tensors(state_dict: Mapping) -> List[str]:
    """Keys of floating-point tensors holding NaN or Inf."""
    return [k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()
            and v.numel() and not bool(torch.isfinite(v).all())]


def check_finite(state_dict: Mapping, source: str) -> None:
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise NonFiniteCheckpointError(
            f'{source} holds NaN/Inf values in {len(bad)} of {len(state_dict)} tensors: '
            f'{_short(bad, 6)}. It was probably saved after training diverged (or damaged when '
            'written); take an earlier checkpoint.')


def mismatch_summary(model: nn.Module, state_dict: Mapping, allowed_missing=()) -> Dict:
    """Missing / unexpected / mis-shaped keys of ``state_dict`` against ``model``."""
    own = model.state_dict()
    patterns = [re.compile(p) for p in allowed_missing]
    missing = [k for k in own if k not in state_dict]
    tolerated = [k for k in missing if any(p.search(k) for p in patterns)]
    missing = [k for k in missing if k not in tolerated]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
        for k in state_dict
        if k in own and torch.is_tensor(state_dict[k])
        and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    return dict(missing=missing, unexpected=unexpected, wrong_shape=wrong_shape,
                tolerated=tolerated)


def describe_mismatch(summary: Dict, n: int = 5) -> str:
    problems = []
    for key, what in (('missing', 'missing'), ('unexpected', 'unexpected'),
                      ('wrong_shape', 'of another shape')):
        if summary[key]:
            problems.append(f'{len(summary[key])} {what} ({_short(summary[key], n)})')
    return '; '.join(problems)


def which_backbones(model: nn.Module, state_dict: Mapping) -> str:
    """' It holds a DGT-T backbone; the config builds DilateFormer-S.' when both are known and
    differ, else ''."""
    from .models.identify import describe_backbone_module, identify_backbone
    held, built = identify_backbone(state_dict), describe_backbone_module(model)
    if not held:
        return ''
    if built and held != built and not held.endswith(built):
        return f' It holds {backbone_phrase(held)}; the config builds {built}.'
    return f' It holds {backbone_phrase(held)}.'


def backbone_phrase(name: str) -> str:
    """'DGT-T' -> 'a DGT-T backbone'; descriptions that already read as a phrase unchanged."""
    return name if name.startswith(('a ', 'an ')) else f'a {name} backbone'


def _short(keys, n=12):
    keys = sorted(keys)
    more = f' ... (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def check_state_dict(model: nn.Module,
                     state_dict: Mapping,
                     allowed_missing: Iterable[str] = (),
                     source: str = 'checkpoint') -> Dict:
    """Compare ``state_dict`` with ``model`` and raise on any mismatch not allowed.

    Args:
        allowed_missing: regexes of model keys that may be absent from the checkpoint.
    Returns:
        dict with the allowed ``missing`` keys (they keep their initialisation).
    """
    summary = mismatch_summary(model, state_dict, allowed_missing)
    problems = []
    if summary['missing']:
        problems.append(f'missing keys ({len(summary["missing"])}): {_short(summary["missing"])}')
    if summary['unexpected']:
        problems.append(f'unexpected keys ({len(summary["unexpected"])}): '
                        f'{_short(summary["unexpected"])}')
    if summary['wrong_shape']:
        problems.append(f'shape mismatches ({len(summary["wrong_shape"])}): '
                        f'{_short(summary["wrong_shape"], 6)}')
    if problems:
        raise CheckpointMismatchError(
            f'{source} does not fit {type(model).__name__}: ' +
            '; '.join(problems) + '.' + which_backbones(model, state_dict) +
            ' Is it the right architecture/variant? Official releases are converted '
            "automatically; a whole detector checkpoint needs init_cfg=dict(..., "
            "prefix='backbone.').")
    return dict(missing=summary['tolerated'])


def _read_checkpoint(checkpoint: str):
    """A local file through the safe loader (with a message for a missing one); URLs and
    ``torchvision://``-style names through mmengine's loader schemes (safe too)."""
    if '://' in checkpoint:
        return CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    import os.path as osp
    path = osp.expanduser(checkpoint)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint {checkpoint} not found. Check the path in init_cfg/load_from/--resume; '
            'official weights must be downloaded by hand (see the backbone README in configs/).')
    return safe_load.safe_torch_load(path, map_location='cpu')


def load_pretrained(model: nn.Module,
                    checkpoint: str,
                    prefix: Optional[str] = None,
                    state_keys=DEFAULT_STATE_KEYS,
                    is_official: Optional[Callable[[Mapping], bool]] = None,
                    convert_official: Optional[Callable[[Mapping], Dict]] = None,
                    allowed_missing: Iterable[str] = (),
                    drop: Iterable[str] = ('head.', ),
                    read_foreign: Optional[Callable[[str], Optional[Dict]]] = None) -> Dict:
    """Load a backbone checkpoint (ours, a converted one, an official one, or a whole model's).

    Steps: safe load -> unwrap (``state_dict``/``model``/...) -> strip ``module.`` -> take
    ``prefix`` (or ``backbone.`` when every weight key carries it) -> convert if official ->
    drop classifier keys -> strict check -> load.

    ``read_foreign(path)`` may read a file that is not a torch checkpoint at all (QnA-ViT's Flax
    msgpack) and return it already converted to our keys; ``None`` means "not mine".
    """
    logger = MMLogger.get_current_instance()
    foreign = read_foreign(checkpoint) if read_foreign is not None else None
    if foreign is not None:
        print_log(f'{checkpoint}: official non-torch checkpoint, converted', logger=logger)
        ckpt = foreign
    else:
        ckpt = _read_checkpoint(checkpoint)
    state_dict = strip_prefix(unwrap_state_dict(ckpt, state_keys), 'module.')
    if prefix:
        if not any(k.startswith(prefix) for k in state_dict):
            raise CheckpointMismatchError(
                f"no key of {checkpoint} starts with prefix '{prefix}' "
                f'(first keys: {_short(list(state_dict)[:5])})')
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                      if k.startswith(prefix)}
    elif any(k.startswith('backbone.') for k in state_dict):
        # a classifier or detector checkpoint: keep the backbone part
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    if is_official is not None and is_official(state_dict):
        print_log(f'{checkpoint}: official layout, converting keys',
                  logger=logger)
        state_dict = convert_official(state_dict)
    drop = tuple(drop)
    state_dict = {k: v for k, v in state_dict.items()
                  if not k.startswith(drop)}
    check_finite(state_dict, f'checkpoint {checkpoint}')
    info = check_state_dict(model, state_dict, allowed_missing,
                            source=f'checkpoint {checkpoint}')
    model._loading_pretrained = True  # checked above, with the allowed-missing keys
    try:
        model.load_state_dict(state_dict, strict=False)
    finally:
        model._loading_pretrained = False
    msg = f'loaded {len(state_dict)} tensors from {checkpoint}'
    if info['missing']:
        msg += f'; freshly initialised: {_short(info["missing"])}'
    print_log(msg, logger=logger)
    return info
