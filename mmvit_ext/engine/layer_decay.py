"""Layer-wise learning-rate decay for any detector/segmentor/classifier with our backbones.

mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor`` only know ConvNeXt/BEiT/MAE and raise
``NotImplementedError`` otherwise; mmpretrain's needs ``get_layer_depth`` on the top-level model,
which MaskRCNN/EncoderDecoder lack. This constructor asks ``model.backbone.get_layer_depth`` (every
mmvit_ext backbone has it) and gives parameter ``p`` of layer ``i`` (of ``n``) the learning rate
``lr * layer_decay_rate ** (n - 1 - i)``; neck/head parameters count as the last layer.

    optim_wrapper = dict(
        constructor='LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=0.8, no_decay_on_1d=True))

``no_decay_on_1d`` (default True) removes weight decay from 1-D parameters (norms, biases), as
timm and the Swin protocol's ``norm`` custom key do.
"""
from typing import List

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['LayerDecayOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs):
        rate = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        no_decay_on_1d = self.paramwise_cfg.get('no_decay_on_1d', True)
        unknown = set(self.paramwise_cfg) - {'layer_decay_rate', 'no_decay_on_1d'}
        if unknown:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: unsupported paramwise_cfg keys '
                             f'{sorted(unknown)}; it takes layer_decay_rate and no_decay_on_1d')
        backbone = getattr(module, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'{type(module).__name__} has no backbone with get_layer_depth(); '
                            'LayerDecayOptimWrapperConstructor needs one (every mmvit_ext '
                            'backbone has it)')
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            # names outside the backbone (neck, heads) come back as the last layer
            layer_id, num_layers = backbone.get_layer_depth(name, 'backbone.')
            decay = not (no_decay_on_1d and param.ndim == 1)
            key = (layer_id, decay)
            if key not in groups:
                group = dict(params=[], lr=self.base_lr * rate**(num_layers - 1 - layer_id),
                             layer_id=layer_id)
                if self.base_wd is not None:
                    group['weight_decay'] = self.base_wd if decay else 0.
                groups[key] = group
            groups[key]['params'].append(param)
        params.extend(groups[k] for k in sorted(groups))
