"""Loading pretrained weights into a backbone, strictly.

mmengine's ``load_checkpoint`` unwraps only ``state_dict`` and loads with ``strict=False``, logging
mismatches as warnings: a DeiT-style ``{'model': ...}`` file then loads *nothing* and training
silently starts from scratch. Here every key must match, unless it is listed as allowed to be
missing (e.g. per-output norms that an ImageNet model does not have); anything else is an error
naming the keys, and saying in words which backbone the file holds when it is one of ours.
NaN / Inf weights are an error too (a file saved after training diverged).
"""
import os.path as osp
from typing import Callable, Dict, Iterable, Mapping, Optional

import torch.nn as nn

from .describe import short_list
from .finite import check_finite
from .fit import CheckpointMismatchError, check_state_dict
from .keys import DEFAULT_STATE_KEYS, backbone_part, strip_prefix, sub_state_dict, unwrap_state_dict
from .safe_load import safe_torch_load

__all__ = ['load_pretrained', 'read_checkpoint']


def read_checkpoint(checkpoint: str):
    """A local file through the safe loader (with a message for a missing one); URLs and
    ``torchvision://``-style names through mmengine's loader schemes (safe too)."""
    if '://' in checkpoint:
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    path = osp.expanduser(checkpoint)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint {checkpoint} not found. Check the path in init_cfg/load_from/--resume; '
            'official weights must be downloaded by hand (see the backbone README in configs/).')
    return safe_torch_load(path, map_location='cpu')


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
    from mmengine.logging import MMLogger, print_log
    logger = MMLogger.get_current_instance()
    foreign = read_foreign(checkpoint) if read_foreign is not None else None
    if foreign is not None:
        print_log(f'{checkpoint}: official non-torch checkpoint, converted', logger=logger)
        ckpt = foreign
    else:
        ckpt = read_checkpoint(checkpoint)
    state_dict = unwrap_state_dict(ckpt, state_keys)
    if prefix:
        state_dict = strip_prefix(state_dict, 'module.')
        if not any(k.startswith(prefix) for k in state_dict):
            raise CheckpointMismatchError(
                f"no key of {checkpoint} starts with prefix '{prefix}' "
                f'(first keys: {short_list(list(state_dict)[:5])})')
        state_dict = sub_state_dict(state_dict, prefix)
    else:  # a classifier or detector checkpoint: its backbone part
        state_dict = backbone_part(state_dict)
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
        msg += f'; freshly initialised: {short_list(info["missing"])}'
    print_log(msg, logger=logger)
    return info
