"""Building blocks of the backbones (never imports :mod:`mmvit_ext.models.backbones`)."""
from .arch import (arch_name, check_common_arguments, check_stage_indices, drop_path_rates,
                   pretrained_to_init_cfg, resolve_arch)
from .blocks import DropPath, Mlp, freeze, vit_init_
from .conv_gelu_linear import conv_gelu_linear
from .gelu_conv import gelu_conv
from .gelu_linear import gelu_linear
from .group_norm1 import GroupNorm1, group_norm1
from .irffn import irffn_hidden
from .layer_norm_linear import layer_norm_linear

__all__ = ['DropPath', 'Mlp', 'freeze', 'vit_init_', 'resolve_arch', 'arch_name',
           'drop_path_rates', 'pretrained_to_init_cfg', 'check_stage_indices',
           'check_common_arguments', 'GroupNorm1',
           'group_norm1', 'irffn_hidden', 'gelu_linear',
           'conv_gelu_linear', 'gelu_conv', 'layer_norm_linear']
