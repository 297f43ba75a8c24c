"""DilateFormer: Multi-Scale Dilated Transformer for Visual Recognition (TMM 2023, arXiv 2302.01791).

Stages 1-2 use Multi-Scale Dilated Attention (sliding 3x3 windows at dilations 1/2/3 over head
groups), stages 3-4 global multi-head self-attention. Every block starts with a depthwise-conv
position encoding (CPE). A 4-conv overlapping stem gives stride 4 and a 3x3 stride-2 conv + BN
downsamples between stages.

Nothing depends on the input size: odd sizes round up at each stride-2 conv (out = ceil(in / 2)),
so there is no padding to a window multiple and nothing to crop back.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model.weight_init import constant_init, trunc_normal_init

from ...attention import GlobalAttention, MultiScaleDilatedAttention
from ...errors import ConfigValueError
from ..converters.dilateformer import (convert_dilateformer, infer_dilateformer_arch,
                                       is_official_dilateformer)
from ..layers import (DropPath, Mlp, arch_name, check_common_arguments, check_stage_indices,
                      drop_path_rates, pretrained_to_init_cfg, resolve_arch)
from ..registry import MODELS
from .base import PyramidBackbone

__all__ = ['DilateFormer']


class DilateBlock(nn.Module):
    """CPE -> x + DropPath(Attn(LN(x))) -> x + DropPath(MLP(LN(x))), on NCHW maps."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_type: str,
                 kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 3),
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: float = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: Dict = dict(type='LN', eps=1e-6),
                 act_cfg: Dict = dict(type='GELU'),
                 with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.attn_type = attn_type
        self.cpe = nn.Conv2d(
            embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        if attn_type == 'msda':
            self.attn = MultiScaleDilatedAttention(
                embed_dims, num_heads, kernel_size, dilations, qkv_bias,
                qk_scale, attn_drop_rate, drop_rate)
        elif attn_type == 'global':
            self.attn = GlobalAttention(embed_dims, num_heads, qkv_bias,
                                        qk_scale, attn_drop_rate, drop_rate)
        else:
            raise ConfigValueError(
                f"attn_type must be 'msda' or 'global', got {attn_type!r}")
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), act_cfg,
                       drop_rate)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe(x)
        B, C, H, W = x.shape
        x = x.permute(0, 2, 3, 1)  # NHWC
        if self.attn_type == 'msda':
            x = x + self.drop_path(self.attn(self.norm1(x)))
        else:
            tokens = self.norm1(x).reshape(B, H * W, C)
            x = x + self.drop_path(self.attn(tokens).reshape(B, H, W, C))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class DilateStage(nn.Module):

    def __init__(self, depth: int, drop_path_rates: Sequence[float], **kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            DilateBlock(drop_path_rate=drop_path_rates[i], **kwargs)
            for i in range(depth))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class Downsample(nn.Module):
    """Overlapping downsampler: 3x3 stride-2 conv (with bias) + BN."""

    def __init__(self, in_channels, out_channels, norm_cfg):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=True)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x):
        return self.norm(self.conv(x))


@MODELS.register_module()
class DilateFormer(PyramidBackbone):
    """DilateFormer backbone for mmdet / mmseg / mmpretrain.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` (or ``'t'``, ``'s'``, ``'b'``), or a
            dict with ``embed_dims`` (int), ``depths`` and ``num_heads`` (4 ints each).
        arch_overrides (dict): entries that replace the arch's, e.g. ``dict(depths=(2, 2, 18,
            2))`` (the released DilateFormer-B file): a command line can give them one by one.
        in_channels: input image channels.
        stem_channels: widths of the first three stem convs (16/32/64 in every paper variant).
        kernel_size: MSDA window size.
        dilations: MSDA dilations, one per head group.
        attn_types: attention of each stage, ``'msda'`` or ``'global'``.
        mlp_ratio: MLP hidden width ratio.
        qkv_bias / qk_scale: as in ViT.
        drop_rate / attn_drop_rate: dropout after projections / on attention weights.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        out_indices: stages whose features are returned (strides 4/8/16/32), each taken after
            the stage's blocks and before its downsampler, through its own norm ``norm{i}``.
            Stages after the last index are not run (under DDP their weights are unused).
        frozen_stages: freeze the stem (0) and stages ``< frozen_stages`` with their
            downsamplers and output norms; -1 freezes nothing.
        norm_eval: keep BatchNorm layers (stem, downsamplers) in eval mode while training.
        with_cp: gradient checkpointing per block (saves memory, costs a recompute).
        norm_cfg: norm inside blocks and on outputs (LayerNorm, eps 1e-6).
        conv_norm_cfg: norm in the stem and downsamplers (BatchNorm).
        act_cfg: activation of the stem and MLPs.
        pretrained: deprecated, use ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'])``. The file may
            be an official release (converted on the fly), a converted one or an mmvit_ext/mm*
            checkpoint.
    """
    arch_zoo = {
        'tiny': dict(embed_dims=72, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=72, depths=(3, 5, 8, 3), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=96, depths=(4, 8, 10, 3), num_heads=(3, 6, 12, 24)),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base'}
    num_stages = 4

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 arch_overrides: Optional[Dict] = None,
                 in_channels: int = 3,
                 stem_channels: Sequence[int] = (16, 32, 64),
                 kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 3),
                 attn_types: Sequence[str] = ('msda', 'msda', 'global', 'global'),
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: float = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 norm_cfg: Dict = dict(type='LN', eps=1e-6),
                 conv_norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU'),
                 pretrained: str = None,
                 init_cfg: Union[Dict, None] = None):
        super().__init__(init_cfg=pretrained_to_init_cfg(pretrained, init_cfg, 'DilateFormer'))
        check_common_arguments('DilateFormer', in_channels=in_channels, mlp_ratio=mlp_ratio,
                               drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                               with_cp=with_cp, norm_eval=norm_eval)
        unknown = [t for t in attn_types if t not in ('msda', 'global')] \
            if isinstance(attn_types, (list, tuple)) else [attn_types]
        if unknown:
            raise ConfigValueError(f'DilateFormer attn_types={attn_types!r}: each stage takes '
                                   f"'msda' or 'global', not {unknown[0]!r}")
        self.arch_name = arch_name(arch, self.arch_zoo, self.arch_aliases, arch_overrides)
        arch = resolve_arch(arch, self.arch_zoo, self.arch_aliases,
                            ('embed_dims', 'depths', 'num_heads'), 'DilateFormer',
                            overrides=arch_overrides)
        self.arch_settings = dict(arch)  # as built (for messages: arch_hint)
        depths, num_heads = tuple(arch['depths']), tuple(arch['num_heads'])
        if len(depths) != self.num_stages or len(num_heads) != self.num_stages:
            raise ConfigValueError(f'DilateFormer needs 4 depths and 4 num_heads, got '
                                   f'depths={depths}, num_heads={num_heads}')
        if len(attn_types) != self.num_stages:
            raise ConfigValueError(f'attn_types needs 4 entries, got {attn_types}')
        out_indices = check_stage_indices(out_indices, frozen_stages, self.num_stages)
        if len(stem_channels) != 3:
            raise ConfigValueError(f'stem_channels needs 3 widths, got {stem_channels}')

        embed_dims = arch['embed_dims']
        self.embed_dims = [embed_dims * 2**i for i in range(self.num_stages)]
        self.num_features = self.embed_dims  # channels per stage, for neck.in_channels
        self.depths, self.num_heads = depths, num_heads
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        s1, s2, s3 = stem_channels

        def conv_bn_act(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                    build_norm_layer(conv_norm_cfg, cout)[1],
                    build_activation_layer(act_cfg)]

        # Indices match the official Sequential (0..9) so the converter is a rename.
        self.stem = nn.Sequential(
            *conv_bn_act(in_channels, s1, 1), *conv_bn_act(s1, s2, 2),
            *conv_bn_act(s2, s3, 1),
            nn.Conv2d(s3, embed_dims, 3, 2, 1, bias=False))

        dpr = drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for i in range(self.num_stages):
            start = sum(depths[:i])
            self.stages.append(
                DilateStage(
                    depths[i], dpr[start:start + depths[i]],
                    embed_dims=self.embed_dims[i], num_heads=num_heads[i],
                    attn_type=attn_types[i], kernel_size=kernel_size,
                    dilations=dilations, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    qk_scale=qk_scale, drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate, norm_cfg=norm_cfg,
                    act_cfg=act_cfg, with_cp=with_cp))
            if i < self.num_stages - 1:
                self.downsamples.append(
                    Downsample(self.embed_dims[i], self.embed_dims[i + 1],
                               conv_norm_cfg))
        for i in out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        self._freeze_stages()  # now: DDP wraps the model before train() first runs

    # ------------------------------------------------------------------ weights
    def pretrained_options(self):
        # an ImageNet model has only the final norm (norm3): the others may be missing
        return dict(is_official=is_official_dilateformer,
                    convert_official=lambda sd: convert_dilateformer(sd, with_head=False))

    @classmethod
    def arch_from_weights(cls, state_dict):
        arch = infer_dilateformer_arch(state_dict)
        return dict(embed_dims=arch['embed_dims'], depths=arch['depths'])  # heads: no shape

    def init_from_scratch(self):
        # Official init: trunc-normal Linear, unit LayerNorm; convs and BN keep torch defaults.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=.02, bias=0.)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, 1.0, bias=0.)

    # ------------------------------------------------------------------ training
    def frozen_modules(self, num_frozen):
        frozen = [self.stem]
        for i in range(num_frozen):
            frozen.append(self.stages[i])
            if i < len(self.downsamples):
                frozen.append(self.downsamples[i])
        return frozen

    def layer_id(self, parts):
        if parts[0] == 'stages':  # stages.{s}.blocks.{j}
            return sum(self.depths[:int(parts[1])]) + int(parts[3]) + 1
        if parts[0] == 'downsamples':
            return sum(self.depths[:int(parts[1]) + 1])
        return super().layer_id(parts)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor):
        empty = self.check_input(x)
        if empty is not None:  # a batch of no images
            return empty
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                outs.append(norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous())
            if i < len(self.downsamples):
                if i + 1 > max(self.out_indices, default=-1):
                    break  # nothing deeper is returned
                x = self.downsamples[i](x)
        return tuple(outs)
