"""Whether a checkpoint's weights fit a model, key by key and shape by shape, and the refusal
that says which keys do not (and, for our backbones, which backbone the file holds)."""
import re
from typing import Dict, Iterable, Mapping

import torch.nn as nn

from ..errors import Refusal
from .describe import short_list, unwrap_model, which_backbones
from .finite import check_finite

__all__ = ['CheckpointMismatchError', 'mismatch_summary', 'describe_mismatch', 'check_state_dict',
           'check_checkpoint_fits', 'PARTIAL_LOAD_SWITCH', 'BACKBONE_PREFIX']

#: the config key that allows loading only the matching weights (tests, load_from)
PARTIAL_LOAD_SWITCH = 'allow_partial_load'
BACKBONE_PREFIX = 'backbone.'


class CheckpointMismatchError(Refusal, KeyError):
    """Keys or shapes of a checkpoint do not match the model."""

    def __str__(self):  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ''


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
        if k in own and hasattr(state_dict[k], 'shape')
        and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    return dict(missing=missing, unexpected=unexpected, wrong_shape=wrong_shape,
                tolerated=tolerated)


def describe_mismatch(summary: Dict, n: int = 5) -> str:
    problems = []
    for key, what in (('missing', 'missing'), ('unexpected', 'unexpected'),
                      ('wrong_shape', 'of another shape')):
        if summary[key]:
            problems.append(f'{len(summary[key])} {what} ({short_list(summary[key], n)})')
    return '; '.join(problems)


def check_state_dict(model: nn.Module, state_dict: Mapping, allowed_missing: Iterable[str] = (),
                     source: str = 'checkpoint') -> Dict:
    """Compare ``state_dict`` with ``model`` and raise on any mismatch not allowed.

    Args:
        allowed_missing: regexes of model keys that may be absent from the checkpoint.
    Returns:
        dict with the allowed ``missing`` keys (they keep their initialisation).
    """
    summary = mismatch_summary(model, state_dict, allowed_missing)
    if not (summary['missing'] or summary['unexpected'] or summary['wrong_shape']):
        return dict(missing=summary['tolerated'])
    held = which_backbones(model, state_dict)
    hinted = 'It loads with' in held  # the line that loads it says more than key names
    problems = [f'{what} ({len(summary[key])}): {short_list(summary[key], 2 if hinted else n)}'
                for key, what, n in (('missing', 'missing keys', 12),
                                     ('unexpected', 'unexpected keys', 12),
                                     ('wrong_shape', 'shape mismatches', 6)) if summary[key]]
    advice = '' if hinted else (
        ' Is it the right architecture/variant? Official releases are converted '
        "automatically; a whole detector checkpoint needs init_cfg=dict(..., prefix='backbone.').")
    raise CheckpointMismatchError(f'{source} does not fit {type(model).__name__}: ' +
                                  '; '.join(problems) + '.' + held + advice)


def check_checkpoint_fits(model, checkpoint, filename: str, mode: str = 'strict',
                          revise_keys=((r'^module\.', ''), )) -> Dict:
    """Raise unless the weights of ``checkpoint`` are finite and fit ``model``.

    ``mode``: ``'strict'`` (test, resume, export): every key and shape must match;
    ``'finetune'`` (``load_from`` in training): the backbone must match exactly, the rest may
    differ (another ``num_classes``) and is reported; ``'partial'``
    (``allow_partial_load=True``): anything goes, reported. Returns the state dict to load (keys
    of another shape dropped).
    """
    from mmengine.logging import print_log
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) \
        else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(f'{filename} holds no weights (a {type(state_dict)})')
    for pattern, repl in revise_keys:
        state_dict = {re.sub(pattern, repl, k): v for k, v in state_dict.items()}
    check_finite(state_dict, f'checkpoint {filename}')
    model = unwrap_model(model)
    summary = mismatch_summary(model, state_dict)
    wrong_keys = {w.split(':')[0] for w in summary['wrong_shape']}
    fitting = {k: v for k, v in state_dict.items() if k not in wrong_keys}
    if not (summary['missing'] or summary['unexpected'] or summary['wrong_shape']):
        return fitting
    total = len(model.state_dict())
    message = (f'checkpoint {filename} does not fit the model of the config: '
               f'{describe_mismatch(summary)} (the model has {total} entries).' +
               which_backbones(model, state_dict))
    if mode == 'finetune':
        in_backbone = [k for k in (summary['missing'] + summary['unexpected'] + list(wrong_keys))
                       if k.startswith(BACKBONE_PREFIX)]
        has_backbone = any(k.startswith(BACKBONE_PREFIX) for k in model.state_dict())
        if not in_backbone or not has_backbone:
            print_log(
                f'load_from {filename}: loading it for fine-tuning; the parts outside the '
                f'backbone differ from the config: {describe_mismatch(summary)}. Keys of another '
                'shape are skipped and missing ones keep their initialisation (e.g. a head '
                'with another num_classes).', logger='current', level=30)
            return fitting
        message += (f' The backbone itself does not fit ({len(in_backbone)} of its keys: '
                    f'{short_list(in_backbone, 5)}), so this is not a fine-tuning of the same '
                    'backbone.')
    if mode == 'partial':
        print_log(f'{message} Loading the matching weights only ({PARTIAL_LOAD_SWITCH}=True).',
                  logger='current', level=30)
        return fitting
    hint = (' A resumed run must continue the same model: resume from a checkpoint of this '
            'config, or start a new run with load_from.' if mode == 'resume' else
            f' If loading only the matching weights is intended, set `{PARTIAL_LOAD_SWITCH} = '
            f'True` in the config or pass --cfg-options {PARTIAL_LOAD_SWITCH}=True.')
    raise CheckpointMismatchError(message + hint)
