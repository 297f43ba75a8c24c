"""What every backbone here shares: the mmdet/mmseg backbone contract around the model itself."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...attention.shapes import ceil_div
from ...checkpoints import (CheckpointMismatchError, check_finite, describe_mismatch,
                            load_pretrained, mismatch_summary, sub_state_dict, which_backbones)
from ...errors import ConfigValueError
from ..layers import freeze

__all__ = ['PyramidBackbone', 'stage_blocks']


class PyramidBackbone(BaseModule):
    """Base of the 4-stage backbones: ``init_cfg`` handling, ``frozen_stages``, ``norm_eval``.

    Subclasses set ``out_indices`` and ``frozen_stages`` (and ``norm_eval`` if they have
    BatchNorm), build ``norm{i}`` for each output, and implement:

    * :meth:`frozen_modules` -- the stem and stages ``< n`` (the output norms are added here);
    * :meth:`init_from_scratch` -- the official (or chosen) initialisation;
    * :meth:`pretrained_options` -- extra :func:`load_pretrained` arguments (official-file
      detection and conversion, where the checkpoint keeps its weights, ...);
    * :meth:`layer_id`, where parameters other than ``stem`` and ``stages.{s}.{j}`` have a depth.

    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` loads strictly: per-output
    norms that an ImageNet model lacks may be missing, classifier keys and the norms of unused
    outputs are dropped, anything else that does not fit is an error naming the keys.
    """
    num_stages = 4
    norm_eval = False
    routes_tokens = False  # True where discrete choices (sort, top-k, k-means) route tokens
    #: refuse a ``load_state_dict`` whose backbone part does not fit or is not finite (see
    #: :meth:`_load_from_state_dict`); set False on an instance for deliberate partial loads
    check_loaded_weights = True

    def frozen_modules(self, num_frozen: int) -> List[nn.Module]:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> Optional[Tuple[torch.Tensor, ...]]:
        """Refuse what no backbone here can take, with the reason; for a batch of no images
        return the empty outputs (``(0, C_i, ceil(H / 2^(i+2)), ceil(W / 2^(i+2)))`` for each
        output stage i, the sizes every backbone here produces), else None."""
        name = type(self).__name__
        if not torch.is_tensor(x) or x.dim() != 4:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f'{name} expects (N, C, H, W) images, got {shape}')
        first_conv = next(m for m in self.modules() if isinstance(m, nn.Conv2d))
        if x.shape[1] != first_conv.in_channels:
            raise ValueError(f'{name} was built for {first_conv.in_channels}-channel images '
                             f'(in_channels), got {x.shape[1]} channels: shape {tuple(x.shape)}')
        weight = first_conv.weight.dtype
        autocast = torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
        if x.dtype != weight and not (autocast and x.is_floating_point()):
            raise ValueError(f'{name} has {weight} weights and got {x.dtype} images (shape '
                             f'{tuple(x.shape)}): convert the input, x.to({weight}) (mmdet\'s '
                             'data preprocessor does), or the model, model.to(x.dtype)')
        H, W = x.shape[2], x.shape[3]  # no int(): exporters keep these symbolic
        if H < 1 or W < 1:
            raise ValueError(f'{name} got an image of {H}x{W} pixels (shape {tuple(x.shape)}); '
                             'an image needs at least one pixel in each direction. Check the '
                             'data pipeline (a crop or resize to zero size?)')
        if x.shape[0] > 0:
            return None
        return tuple(x.new_zeros(0, self.embed_dims[i], ceil_div(H, 2**(i + 2)),
                                 ceil_div(W, 2**(i + 2))) for i in self.out_indices)

    def init_from_scratch(self) -> None:
        pass

    def pretrained_options(self) -> Dict:
        return {}

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer id for layer-wise lr decay, ``(layer_id, max_layer_id + 1)`` as mmpretrain's
        backbones return it: see :meth:`layer_id`; anything else (output norms, ...) is last."""
        num_layers = sum(self.depths) + 2
        layer = None
        if param_name.startswith(prefix):
            layer = self.layer_id(param_name[len(prefix):].split('.'))
        return (num_layers - 1 if layer is None else layer), num_layers

    def layer_id(self, parts: Sequence[str]) -> Optional[int]:
        """``stem`` -> 0, ``stages.{s}.{j}`` -> blocks 1..sum(depths) in execution order,
        None for the rest. Backbones with other parameter groups extend it."""
        if parts[0] == 'stem':
            return 0
        if parts[0] == 'stages':
            return sum(self.depths[:int(parts[1])]) + int(parts[2]) + 1
        return None

    def init_weights(self):
        cfg = self.init_cfg
        if cfg is not None and cfg.get('type') == 'Pretrained':
            if not cfg.get('checkpoint'):
                raise ValueError("init_cfg of type 'Pretrained' needs a 'checkpoint'")
            unused = tuple(f'norm{i}.' for i in range(self.num_stages)
                           if i not in self.out_indices)
            options = dict(allowed_missing=[r'^norm[0-3]\.'], drop=('head.', ) + unused)
            options.update(self.pretrained_options())
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'), **options)
            return
        if cfg is not None:
            super().init_weights()
            return
        print_log(f'{type(self).__name__}: no pretrained weights (init_cfg=None), training '
                  'starts from scratch', logger='current')
        self.init_from_scratch()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Every loader of a whole model (mmengine's load_checkpoint, so init_detector,
        # inference_model, get_model(weights=...), the inferencers; torch's load_state_dict)
        # passes through here with the backbone's prefix: the backbone checks its own part, so a
        # checkpoint of another family or with NaN weights is refused wherever it enters,
        # without patching any framework.
        if self.check_loaded_weights and not getattr(self, '_loading_pretrained', False):
            self._check_own_weights(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_own_weights(self, state_dict, prefix: str) -> None:
        own = sub_state_dict(state_dict, prefix)
        where = f"the checkpoint's backbone part ('{prefix}*')" if prefix else \
            'the backbone checkpoint'
        if not own:
            raise CheckpointMismatchError(
                f'the weights given to {type(self).__name__} hold nothing for the backbone '
                f"('{prefix}*'): it is not a checkpoint of this model (or its keys carry another "
                'prefix).')
        check_finite(own, where)
        summary = mismatch_summary(self, own)
        if summary['missing'] or summary['unexpected'] or summary['wrong_shape']:
            held = which_backbones(self, own)
            advice = '' if 'It loads with' in held else (
                ' Load a checkpoint of this config (official ImageNet weights go through '
                'init_cfg=dict(type="Pretrained", ...), which converts them).')
            raise CheckpointMismatchError(
                f'{where} does not fit {type(self).__name__}: {describe_mismatch(summary)}.' +
                held + advice)

    # ------------------------------------------------------------------ in words
    @classmethod
    def arch_from_weights(cls, state_dict) -> Optional[Dict]:
        """The arch entries that a state dict (backbone keys) of this family fixes by its tensor
        shapes (depths, widths, ...); entries that change no shape are left out, so that the
        config keeps its own. None where the family cannot tell."""
        return None

    def arch_hint(self, state_dict) -> str:
        """' It loads with --cfg-options ...' when ``state_dict`` is a backbone of this family
        built with another arch (another zoo variant, or a custom one such as the released
        DilateFormer-B file), else ''."""
        from ...checkpoints import backbone_part
        from ..identify import DISPLAY, identify_backbone
        family = type(self).__name__
        held = identify_backbone(state_dict)
        if family not in DISPLAY or not held:
            return ''
        name, variants = DISPLAY[family]
        for arch, suffix in variants.items():
            if held == f'{name}-{suffix}':
                if arch == getattr(self, 'arch_name', None):
                    return ''
                return (f' It loads with --cfg-options model.backbone.arch={arch} (the '
                        f'{held} arch).')
        if held != f'a {name} backbone of a custom arch':
            return ''
        try:
            found = type(self).arch_from_weights(backbone_part(state_dict))
        except (KeyError, ValueError, TypeError, IndexError):
            found = None
        own = getattr(self, 'arch_settings', {})
        changed = {k: v for k, v in (found or {}).items() if k in own and
                   _as_list(v) != _as_list(own[k])}
        if not changed:
            return ''
        options = ' '.join(f'model.backbone.arch_overrides.{k}={_cli_value(v)}'
                           for k, v in changed.items())
        refused = self._arch_refusal(changed)
        if refused:  # e.g. the config's head counts do not divide the file's widths
            heads = ', '.join(f'model.backbone.arch_overrides.{k}=[...]'
                              for k in own if k.endswith('heads'))
            return (f' Its tensors fit --cfg-options {options}, but that arch is refused '
                    f'({refused}): head counts change no weight shape, so add the ones the '
                    f'model was trained with ({heads}).')
        return f' It loads with --cfg-options {options}.'

    def _arch_refusal(self, overrides: Dict) -> Optional[str]:
        """Why this family refuses its arch with ``overrides`` (built on the meta device: no
        memory, no weights), or None."""
        try:
            with torch.device('meta'):
                type(self)(arch=dict(self.arch_settings), arch_overrides=overrides)
        except ConfigValueError as error:
            return str(error)
        return None

    def describe(self) -> str:
        """'DilateFormer-S', 'DGT (custom arch)': what this backbone is, for messages."""
        from ..identify import describe_backbone
        return describe_backbone(self)

    @staticmethod
    def identify_weights(state_dict) -> Optional[str]:
        """Which backbone ``state_dict`` holds, in words ('DGT-T', 'an mmdet/mmseg
        SwinTransformer backbone', ...), or None (the checkpoint room asks, for its messages)."""
        from ..identify import identify_backbone
        return identify_backbone(state_dict)

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        modules = self.frozen_modules(self.frozen_stages)
        modules += [getattr(self, f'norm{i}') for i in range(self.frozen_stages)
                    if i in self.out_indices]
        freeze(modules)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


def stage_blocks(state_dict, num_stages: int = 4) -> List[List[str]]:
    """Per stage, the block names ``stages.{s}.{j}`` a state dict holds, in order (the backbones
    whose blocks sit directly in ``stages.{s}``)."""
    found = [set() for _ in range(num_stages)]
    for key in state_dict:
        parts = key.split('.')
        if len(parts) > 3 and parts[0] == 'stages' and parts[1].isdigit() and \
                parts[2].isdigit() and int(parts[1]) < num_stages:
            found[int(parts[1])].add(int(parts[2]))
    return [[f'stages.{s}.{j}' for j in sorted(blocks)] for s, blocks in enumerate(found)]


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _cli_value(value) -> str:
    """A value as mmengine's --cfg-options parses it back (lists without spaces)."""
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_cli_value(v) for v in value) + ']'
    return 'None' if value is None else str(value)
