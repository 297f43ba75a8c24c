"""A backbone's architecture and stage arguments: zoo names or custom dicts, checked with one
line naming the key, the value and what is allowed."""
from typing import Dict, Mapping, Optional, Sequence, Union

import torch

from ...errors import ConfigValueError

__all__ = ['resolve_arch', 'arch_name', 'drop_path_rates', 'pretrained_to_init_cfg',
           'check_stage_indices', 'check_common_arguments']


def resolve_arch(arch: Union[str, Mapping], zoo: Mapping[str, Dict],
                 aliases: Mapping[str, str], required: Sequence[str],
                 name: str, optional: Sequence[str] = (),
                 overrides: Optional[Mapping] = None) -> Dict:
    """Return the arch settings for a zoo name/alias or a custom dict, with clear errors: an
    unknown name, missing keys, keys the family does not use (a typo would otherwise be ignored
    silently), or values of another kind or length than the family's own archs use (another
    family's arch dict).

    ``overrides`` (the backbones' ``arch_overrides``) replaces single entries of the arch, so
    that a command line can change one: ``--cfg-options
    model.backbone.arch_overrides.depths=[2,2,18,2]`` (mmengine's ``--cfg-options`` cannot give a
    whole dict)."""
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ConfigValueError(f'{name} arch_overrides must be a dict of arch keys, got '
                                   f'{overrides!r}')
        base = resolve_arch(arch, zoo, aliases, required, name, optional)
        return resolve_arch(dict(base, **overrides), zoo, aliases, required, name, optional)
    if isinstance(arch, str):
        key = arch_name(arch, zoo, aliases)
        if key not in zoo:
            choices = sorted(set(zoo) | set(aliases))
            raise ConfigValueError(f'unknown {name} arch {arch!r}; choose one of {choices} '
                                   f'or pass a dict with keys {list(required)}')
        return dict(zoo[key])
    if isinstance(arch, Mapping):
        missing = [k for k in required if k not in arch]
        if missing:
            raise ConfigValueError(f'custom {name} arch dict lacks {missing}; it needs '
                                   f'{list(required)}, got {dict(arch)}')
        unknown = [k for k in arch if k not in required and k not in optional]
        if unknown:
            valid = list(required) + list(optional)
            raise ConfigValueError(f'custom {name} arch dict has keys {name} does not use: '
                                   f'{unknown}; the valid keys are {valid}')
        _check_arch_values(dict(arch), zoo, name)
        return dict(arch)
    raise ConfigValueError(f'{name} arch must be a zoo name (str) or a dict, got '
                           f'{type(arch).__name__} {arch!r}; the names are {sorted(zoo)}')


def _check_arch_values(arch: Dict, zoo: Mapping[str, Dict], name: str) -> None:
    """Each value like the zoo's: a sequence where they are sequences, of their length."""
    for key, value in arch.items():
        examples = [entry[key] for entry in zoo.values() if key in entry]
        if not examples:
            continue
        first = next(iter(zoo))
        if isinstance(examples[0], (list, tuple)):
            lengths = {len(e) for e in examples}
            if not isinstance(value, (list, tuple)):
                raise ConfigValueError(
                    f'{name} arch key {key!r} takes a sequence (e.g. its {first!r} arch: '
                    f'{zoo[first][key]!r}), got {value!r}')
            if len(lengths) == 1 and len(value) not in lengths:
                raise ConfigValueError(
                    f'{name} arch key {key!r} takes {lengths.pop()} values, one per stage '
                    f'(e.g. its {first!r} arch: {zoo[first][key]!r}), got {len(value)}: {value!r}')
        elif isinstance(examples[0], (int, float)) and not isinstance(examples[0], bool) and \
                (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigValueError(f'{name} arch key {key!r} takes a number (e.g. its {first!r} '
                                   f'arch: {zoo[first][key]!r}), got {value!r}')


def arch_name(arch: Union[str, Mapping], zoo: Mapping[str, Dict],
              aliases: Mapping[str, str], overrides: Optional[Mapping] = None) -> str:
    """The zoo name of ``arch`` ('tiny', ...), or 'custom' for a dict or with overrides."""
    if isinstance(arch, str) and not overrides:
        return aliases.get(arch.lower(), arch.lower())
    return 'custom'


def drop_path_rates(rate: float, num_blocks: int) -> list:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over the blocks."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ConfigValueError(f'drop_path_rate must be in [0, 1), got {rate}: it is the '
                               'probability of dropping the last block (0.1-0.4 are usual; 1 '
                               'would drop it always)')
    # on the CPU explicitly: models may be built under another default device (e.g. 'meta')
    return torch.linspace(0, rate, num_blocks, device='cpu').tolist()


def pretrained_to_init_cfg(pretrained: Optional[str], init_cfg: Optional[Dict],
                           name: str) -> Optional[Dict]:
    """Map the deprecated ``pretrained=PATH`` argument onto ``init_cfg`` (with a warning)."""
    if pretrained is None:
        return init_cfg
    if init_cfg is not None:
        raise ConfigValueError('init_cfg and pretrained cannot be set at the same time; use '
                               'init_cfg only')
    from mmengine.logging import print_log
    print_log(f"{name}: `pretrained` is deprecated, use init_cfg=dict(type='Pretrained', "
              'checkpoint=...)', logger='current', level=30)
    return dict(type='Pretrained', checkpoint=pretrained)


def check_stage_indices(out_indices: Union[int, Sequence[int]], frozen_stages: int,
                        num_stages: int = 4) -> tuple:
    """Validate ``out_indices`` (an int or ints; negative ones count from the end) and
    ``frozen_stages``; returns the normalised ``out_indices`` tuple."""
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices, )  # as mmpretrain's backbones accept it
    if not isinstance(out_indices, (list, tuple)) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in out_indices):
        raise ConfigValueError(f'out_indices must be stage numbers (ints in [0, {num_stages - 1}]'
                               f', or negative from the end), got {out_indices!r}')
    out = tuple(i + num_stages if i < 0 else i for i in out_indices)
    if not out or any(not 0 <= i < num_stages for i in out):
        raise ConfigValueError(f'out_indices must be in [0, {num_stages - 1}], got '
                               f'{tuple(out_indices)}')
    if len(set(out)) != len(out):
        raise ConfigValueError(f'out_indices {tuple(out_indices)} name a stage twice; each stage '
                               'is returned once (a neck expects one map per listed stage)')
    if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or \
            not -1 <= frozen_stages <= num_stages:
        raise ConfigValueError(f'frozen_stages must be an int in [-1, {num_stages}], got '
                               f'{frozen_stages!r}')
    return out


#: argument -> (test, what is allowed), for the arguments every backbone shares
_COMMON_ARGUMENTS = {
    'in_channels': (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                    'a whole number of image channels >= 1 (3 for RGB)'),
    'mlp_ratio': (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and
                  0 < v <= 64, 'a number in (0, 64] (4 in the papers)'),
    'drop_rate': (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and
                  0 <= v < 1, 'a probability in [0, 1)'),
    'attn_drop_rate': (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and
                       0 <= v < 1, 'a probability in [0, 1)'),
    'with_cp': (lambda v: isinstance(v, bool), 'True or False'),
    'norm_eval': (lambda v: isinstance(v, bool), 'True or False'),
}


def check_common_arguments(owner: str, **values) -> None:
    """Refuse in one line (naming the key, the value and what is allowed) a shared backbone
    argument that cannot work: ``with_cp='yes'`` was taken as true, ``mlp_ratio=-1`` ended in a
    traceback deep in ``nn.Linear``."""
    for name, value in values.items():
        test, allowed = _COMMON_ARGUMENTS[name]
        if not test(value):
            raise ConfigValueError(f'{owner} {name}={value!r} cannot work: it must be {allowed}')
