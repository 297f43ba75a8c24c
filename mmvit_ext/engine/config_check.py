"""Config values that cannot work, refused before anything is built, in one line naming the
key, the value and what is allowed (``tools/train.py`` and ``tools/test.py`` run this after
``--cfg-options``). Without it a typo ends minutes later in a traceback deep in mmengine."""
import difflib
import inspect
from numbers import Number
from typing import Any, Callable, List, Tuple

from ..errors import ConfigValueError

__all__ = ['check_config_values', 'check_backbone_arguments', 'check_neck_inputs', 'VALUE_RULES']


def _whole(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _number(v) -> bool:
    return isinstance(v, Number) and not isinstance(v, bool) and v >= 0


#: (key, test, what is allowed)
VALUE_RULES: List[Tuple[str, Callable[[Any], bool], str]] = [
    ('train_cfg.max_epochs', _whole(1), 'a whole number of epochs >= 1'),
    ('train_cfg.max_iters', _whole(1), 'a whole number of iterations >= 1'),
    ('train_cfg.val_interval', _whole(1), 'a whole number >= 1'),
    ('train_cfg.val_begin', _whole(0), 'a whole number >= 0'),
    *[(f'{p}_dataloader.batch_size', _whole(1), 'a whole number of images per process >= 1')
      for p in ('train', 'val', 'test')],
    *[(f'{p}_dataloader.num_workers', _whole(0), 'a whole number of worker processes >= 0')
      for p in ('train', 'val', 'test')],
    ('optim_wrapper.optimizer.lr', _number, 'a number >= 0 (e.g. 1e-4)'),
    ('optim_wrapper.optimizer.weight_decay', _number, 'a number >= 0 (e.g. 0.05)'),
    ('optim_wrapper.accumulative_counts', _whole(1), 'a whole number >= 1'),
    ('default_hooks.checkpoint.interval', _whole(-1), 'a whole number (-1: never)'),
    ('default_hooks.checkpoint.max_keep_ckpts', _whole(-1), 'a whole number (-1: keep all)'),
    ('optim_wrapper.clip_grad.max_norm', lambda v: _number(v) and v > 0,
     'a number > 0 (e.g. 1.0), or clip_grad=None for no clipping'),
    ('randomness.seed', lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
     'a whole number >= 0, or None for a random seed'),
    ('model.backbone.with_cp', lambda v: isinstance(v, bool), 'True or False'),
]


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split('.'):
        try:  # a Config or a (Config)dict
            if part not in node:
                return False, None
            node = node[part]
        except TypeError:
            return False, None
    return True, node


def check_config_values(cfg) -> None:
    """Raise :class:`ConfigValueError` for the first value of :data:`VALUE_RULES` that fails."""
    for key, ok, allowed in VALUE_RULES:
        present, value = _get(cfg, key)
        if present and value is not None and not ok(value):
            raise ConfigValueError(f'{key}={value!r} cannot work: it must be {allowed}. Fix it '
                                   f'in the config or with --cfg-options {key}=...')
    check_backbone_arguments(cfg)
    check_neck_inputs(cfg)


def check_backbone_arguments(cfg) -> None:
    """For our backbones: every ``model.backbone`` key must be an argument of the class (a
    misspelt one is named with the closest arguments)."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return
    from mmengine.registry import MODELS

    from ..models.backbones.base import PyramidBackbone
    cls = MODELS.get(backbone['type'].split('.')[-1])
    if not (inspect.isclass(cls) and issubclass(cls, PyramidBackbone)):
        return  # not ours: the framework's own errors
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n in params if n != 'self']
    for key in backbone:
        if key in ('type', '_delete_') or key in names:
            continue
        close = difflib.get_close_matches(key, names, n=2)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ''
        raise ConfigValueError(f'model.backbone.{key}: {cls.__name__} has no argument {key!r}'
                               f'{hint}; its arguments are {names}')


def check_neck_inputs(cfg) -> None:
    """The neck takes one map per backbone output: ``model.neck.in_channels`` and
    ``model.backbone.out_indices`` of the same length (``out_indices=3`` with an FPN of four
    inputs ended in an assert inside mmdet)."""
    model = cfg.get('model') or {}
    backbone, neck = model.get('backbone'), model.get('neck')
    if not isinstance(backbone, dict) or not isinstance(neck, dict):
        return
    indices, channels = backbone.get('out_indices'), neck.get('in_channels')
    if indices is None or not isinstance(channels, (list, tuple)):
        return
    listed = (indices, ) if isinstance(indices, int) else indices
    if not isinstance(listed, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in listed):
        return  # not stage numbers: the backbone refuses them, naming what it takes
    count = len(listed)
    if count != len(channels):
        raise ConfigValueError(
            f'model.backbone.out_indices={indices!r} gives {count} feature map(s), and '
            f'model.neck.in_channels={list(channels)} expects {len(channels)}: give as many '
            'out_indices as the neck has inputs (e.g. (0, 1, 2, 3) for FPN)')
