"""SG-Former: Self-guided Transformer with Evolving Token Reallocation (ICCV 2023, arXiv 2308.12216).

Stages 1-3 alternate hybrid-scale (H) and self-guided (G) blocks; each H block hands its
significance map to the next G block, which spends more key tokens on the salient regions. Stage 4
is full attention. Stem: three 3x3 conv + GroupNorm(1, C) units (stride 4) and a LayerNorm, then a
trainable sin-cos position embedding; downsampling: 1x1 / depthwise 3x3 stride 2 / 1x1 conv units.

Any input size: the convs round up (``ceil(H / 2)``), the position embedding is resized (bicubic)
to the stem's grid when it differs from the 56x56 it was trained on, and the attention pads only
what its windows, reductions and merge groups need, inside each block (see
``models/attention/sg_attention.py`` for what padded tokens do).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from ...attention.forms import dispatch, register
from ...attention.sg import (DEFAULT_MERGE_GROUPS, FullAttention, HybridScaleAttention,
                             SelfGuidedAttention, conv_on_tokens)
from ...errors import ConfigValueError
from ..converters.sgformer import (SGFORMER_STATE_KEYS, convert_sgformer, infer_sgformer_arch,
                                   is_official_sgformer)
from ..layers import (DropPath, GroupNorm1, arch_name, check_common_arguments, check_stage_indices,
                      conv_gelu_linear, drop_path_rates, gelu_conv, pretrained_to_init_cfg,
                      resolve_arch, vit_init_)
from ..registry import MODELS
from .base import PyramidBackbone

__all__ = ['SGFormer', 'sincos_pos_embed_2d']


def sincos_pos_embed_2d(dims: int, grid: Tuple[int, int], temperature: float = 10000.):
    """MAE-style 2-D sin-cos table ``(H*W, dims)``: channels ``[0, dims/2)`` encode the column,
    ``[dims/2, dims)`` the row; each half is ``[sin(p w_k), cos(p w_k)]``, ``w_k = T^(-k/(dims/4))``.
    """
    if dims % 4:
        raise ConfigValueError(f'the sin-cos position embedding needs dims % 4 == 0, got {dims}')
    H, W = grid
    omega = 1. / temperature**(torch.arange(dims // 4, dtype=torch.float64) / (dims / 4))
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                                torch.arange(W, dtype=torch.float64), indexing='ij')

    def encode(pos):
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


class ConvGN(nn.Sequential):
    """Bias-free conv + GroupNorm(1, C) (called ``c`` / ``bn`` in the official code); the norm is
    :class:`GroupNorm1`, the same layer with a reduction that keeps a GPU busy."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.norm = GroupNorm1(cout)


class Stem(nn.Module):
    """3x3 s2, GELU, 3x3 s1, GELU, 3x3 s2 (conv + GN units), then LayerNorm on the tokens."""

    def __init__(self, in_channels, dims):
        super().__init__()
        self.layers = nn.Sequential(
            ConvGN(in_channels, dims, 3, 2), nn.GELU(), ConvGN(dims, dims, 3, 1), nn.GELU(),
            ConvGN(dims, dims, 3, 2))
        self.norm = nn.LayerNorm(dims)

    def forward(self, x):
        conv1, act1, conv2, act2, conv3 = self.layers
        # GELU -> conv pairs through gelu_conv: its memory-lean form keeps one map, not two
        x = conv2.norm(gelu_conv(conv1(x), act1, conv2.conv))
        x = conv3.norm(gelu_conv(x, act2, conv3.conv))
        hw = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), tuple(hw)


class Downsample(nn.Module):
    """1x1 conv-GN, GELU, depthwise 3x3 stride-2 conv-GN, GELU, 1x1 conv-GN (no norm after)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = ConvGN(cin, cout, 1)
        self.conv2 = ConvGN(cout, cout, 3, 2, groups=cout)
        self.conv3 = ConvGN(cout, cout, 1)
        self.act = nn.GELU()

    def forward(self, x):
        # conv3(act(conv2(act(conv1(x))))), the GELU -> conv pairs through gelu_conv
        x = self.conv2.norm(gelu_conv(self.conv1(x), self.act, self.conv2.conv))
        x = self.conv3.norm(gelu_conv(x, self.act, self.conv3.conv))
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


class Mlp(nn.Module):
    """fc1, ``GELU(h + dwconv3x3(h))`` (a residual inside the MLP), fc2; the last three through
    :func:`conv_gelu_linear`, whose memory-lean form keeps one hidden activation instead of
    three."""

    def __init__(self, dims, hidden, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x, hw):
        h = self.fc1(x)
        if not (self.training and self.drop.p > 0):  # the memory-lean form has no dropout
            return self.drop(conv_gelu_linear(h, hw, self.dwconv, self.act, self.fc2))
        h = self.drop(self.act(h + conv_on_tokens(self.dwconv, h, hw)))
        return self.drop(self.fc2(h))


class SGBlock(nn.Module):
    """Pre-norm block; ``attn_type`` 'hybrid' (H), 'guided' (G) or 'full' (F).

    ``forward(x, hw, significance) -> (x, significance)``: an H block returns its map, a G block
    consumes it and returns None, an F block passes nothing.
    """

    def __init__(self, dims, num_heads, attn_type, sr_ratio, merge_groups, window_size=7,
                 mlp_ratio=4., qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0.,
                 drop_path_rate=0., with_cp=False):
        super().__init__()
        self.attn_type = attn_type
        self.with_cp = with_cp
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        common = dict(qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop_rate,
                      proj_drop=drop_rate)
        if attn_type == 'hybrid':
            self.attn = HybridScaleAttention(dims, num_heads, sr_ratio, window_size, **common)
        elif attn_type == 'guided':
            self.attn = SelfGuidedAttention(dims, num_heads, merge_groups, **common)
        elif attn_type == 'full':
            self.attn = FullAttention(dims, num_heads, **common)
        else:
            raise ConfigValueError(f"attn_type must be 'hybrid', 'guided' or 'full', got "
                                   f'{attn_type!r}')
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = Mlp(dims, int(dims * mlp_ratio), drop_rate)

    def _forward(self, x, hw, significance):
        y = self.norm1(x)
        new_significance = None
        if self.attn_type == 'hybrid':
            y, new_significance = self.attn(y, hw)
        elif self.attn_type == 'guided':
            y = self.attn(y, hw, significance)
        else:
            y = self.attn(y, hw)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x), hw))
        return x, new_significance

    def forward(self, x, hw: Tuple[int, int], significance: Optional[torch.Tensor] = None):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, hw, significance, use_reentrant=False)
        return self._forward(x, hw, significance)


def _resized_table(pos_embed: torch.Tensor, grid: Tuple[int, int], hw) -> torch.Tensor:
    C = pos_embed.shape[-1]
    table = pos_embed.reshape(1, *grid, C).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=hw, mode='bicubic', align_corners=False)
    return table.flatten(2).transpose(1, 2)


@register('sgformer.pos_embed', 'fast')
def resized_pos_embed_fast(pos_embed, grid, hw):
    """The table as it is at its own size, else resized (bicubic)."""
    return pos_embed if tuple(hw) == tuple(grid) else _resized_table(pos_embed, grid, hw)


@register('sgformer.pos_embed', 'traceable')
def resized_pos_embed_traceable(pos_embed, grid, hw):
    """Always resized (to the same size an exact copy): no size test in a traced graph."""
    return _resized_table(pos_embed, grid, hw)


@MODELS.register_module()
class SGFormer(PyramidBackbone):
    """SG-Former backbone for mmdet / mmseg / mmpretrain.

    Args:
        arch (str | dict): ``'s'``, ``'m'``, ``'b'`` (or ``'small'``, ``'medium'``, ``'base'``), or
            a dict with ``embed_dims``, ``depths``, ``num_heads`` (4 ints each) and optionally
            ``sr_ratios`` (default 8, 4, 2, 1).
        in_channels: input image channels.
        img_size: training resolution of ``pos_embed`` (224 -> a 56x56 table); other inputs get
            the table resized by bicubic interpolation.
        window_size: local window of the H blocks (7 in every paper variant).
        merge_groups: per stage 1-3, the G block's ``((end_fraction, chunk), ...)``; default the
            official ones (stage 1: 196 / 56 / 28 tokens per key over the quarter / half /
            quarter of ascending significance; stage 2: 49 / 14 / 7; stage 3: 2 / 1 over halves).
        mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate: as in ViT.
        drop_path_rate: stochastic depth, linear over all blocks (ImageNet: S 0.1, M 0.2, B 0.4).
        out_indices: stages returned (strides 4/8/16/32); each output is the stage's LayerNorm
            ``norm{i}`` (the same normed map feeds the next stage). Stages after the last index are
            not run.
        frozen_stages: freeze the stem and ``pos_embed`` (0) and stages ``< frozen_stages`` with
            their downsamplers and norms; -1 freezes nothing.
        norm_eval: taken so that one config line fits every backbone (mmdet's ResNet configs
            set it); SG-Former has no BatchNorm, so it changes nothing.
        with_cp: gradient checkpointing per block.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'][, ema=True])``.
            An official file is converted on the fly, taking ``state_dict_ema`` (the weights of the
            published accuracy) unless ``ema=False``.
    """
    routes_tokens = True  # significance sort: rounding can swap two tokens
    arch_zoo = {
        'small': dict(embed_dims=(64, 128, 256, 512), depths=(2, 4, 16, 1),
                      num_heads=(2, 4, 8, 16)),
        'medium': dict(embed_dims=(64, 128, 256, 512), depths=(2, 6, 28, 2),
                       num_heads=(2, 4, 8, 16)),
        'base': dict(embed_dims=(96, 192, 384, 768), depths=(4, 6, 24, 2),
                     num_heads=(4, 6, 12, 24)),
    }
    arch_aliases = {'s': 'small', 'm': 'medium', 'b': 'base'}
    num_stages = 4

    def __init__(self,
                 arch: Union[str, Dict] = 'small',
                 arch_overrides: Optional[Dict] = None,
                 in_channels: int = 3,
                 img_size: int = 224,
                 window_size: int = 7,
                 merge_groups: Sequence = DEFAULT_MERGE_GROUPS,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg=pretrained_to_init_cfg(pretrained, init_cfg, 'SGFormer'))
        check_common_arguments('SGFormer', in_channels=in_channels, mlp_ratio=mlp_ratio,
                               drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                               with_cp=with_cp, norm_eval=norm_eval)
        self.norm_eval = norm_eval  # no BatchNorm here: see the docstring
        self.arch_name = arch_name(arch, self.arch_zoo, self.arch_aliases, arch_overrides)
        arch = resolve_arch(arch, self.arch_zoo, self.arch_aliases,
                            ('embed_dims', 'depths', 'num_heads'), 'SGFormer',
                            optional=('sr_ratios', ),
                            overrides=arch_overrides)
        self.arch_settings = dict(arch)  # as built (for messages: arch_hint)
        dims, depths = tuple(arch['embed_dims']), tuple(arch['depths'])
        num_heads = tuple(arch['num_heads'])
        sr_ratios = tuple(arch.get('sr_ratios', (8, 4, 2, 1)))
        for name, value in (('embed_dims', dims), ('depths', depths), ('num_heads', num_heads),
                            ('sr_ratios', sr_ratios)):
            if len(value) != self.num_stages:
                raise ConfigValueError(f'SGFormer arch needs 4 {name}, got {value}')
        if sr_ratios[-1] != 1 or any(r < 2 for r in sr_ratios[:-1]):
            raise ConfigValueError(f'sr_ratios must be > 1 in stages 1-3 (hybrid/guided blocks) '
                                   f'and 1 in stage 4 (full attention), got {sr_ratios}')
        if len(merge_groups) != self.num_stages - 1:
            raise ConfigValueError(f'merge_groups needs one entry per stage 1-3, got '
                                   f'{merge_groups}')
        out_indices = check_stage_indices(out_indices, frozen_stages, self.num_stages)
        if img_size % 4:
            raise ConfigValueError(f'img_size must be a multiple of 4, got {img_size}')

        self.embed_dims = list(dims)
        self.num_features = list(dims)
        self.depths, self.num_heads, self.sr_ratios = depths, num_heads, sr_ratios
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.pos_grid = (img_size // 4, img_size // 4)

        self.stem = Stem(in_channels, dims[0])
        # trainable (the official comment says "fixed", but it is a Parameter with grad)
        self.pos_embed = nn.Parameter(
            sincos_pos_embed_2d(dims[0], self.pos_grid)[None])
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for i in range(self.num_stages):
            if i > 0:
                self.downsamples.append(Downsample(dims[i - 1], dims[i]))
            blocks = nn.ModuleList()
            for j in range(depths[i]):
                attn_type = 'full' if sr_ratios[i] == 1 else ('hybrid' if j % 2 == 0 else 'guided')
                blocks.append(SGBlock(
                    dims[i], num_heads[i], attn_type, sr_ratios[i],
                    merge_groups[i] if i < 3 else None, window_size, mlp_ratio, qkv_bias,
                    qk_scale, drop_rate, attn_drop_rate, dpr[sum(depths[:i]) + j], with_cp))
            self.stages.append(blocks)
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i], eps=1e-6))
        self._freeze_stages()  # now: DDP wraps the model before train() first runs

    # ------------------------------------------------------------------ weights
    def pretrained_options(self):
        cfg = self.init_cfg
        keys = SGFORMER_STATE_KEYS if cfg.get('ema', True) else (
            'state_dict', 'model', 'state_dict_ema', 'model_ema')
        # every stage norm is part of the model (and of an official file): none may be missing
        return dict(state_keys=keys, is_official=is_official_sgformer,
                    convert_official=lambda sd: convert_sgformer(sd, with_head=False),
                    allowed_missing=(), drop=('head.', ))

    @classmethod
    def arch_from_weights(cls, state_dict):
        arch = infer_sgformer_arch(state_dict)
        return dict(embed_dims=arch['embed_dims'], depths=arch['depths'])  # heads: no shape

    def init_from_scratch(self):
        vit_init_(self)  # official: trunc-normal Linear, fan-out normal convs, unit norms
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed_2d(self.embed_dims[0], self.pos_grid)[None])

    # ------------------------------------------------------------------ training
    def frozen_modules(self, num_frozen):
        self.pos_embed.requires_grad = False
        frozen = [self.stem]
        for i in range(num_frozen):
            frozen += [self.stages[i], getattr(self, f'norm{i}')]
            if i > 0:
                frozen.append(self.downsamples[i - 1])
        return frozen

    def layer_id(self, parts):
        if parts[0] == 'pos_embed':
            return 0
        if parts[0] == 'downsamples':  # downsamples[i] opens stage i + 1
            return sum(self.depths[:int(parts[1]) + 1])
        return super().layer_id(parts)

    # ------------------------------------------------------------------ forward
    def resized_pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        return dispatch('sgformer.pos_embed', self.pos_embed, self.pos_grid, hw)

    def forward(self, x: torch.Tensor, significance_maps: Optional[List] = None):
        """Pyramid features; ``significance_maps``, if a list, receives the map of every H block
        as ``(stage, block, map (B, H, W))``."""
        empty = self.check_input(x)
        if empty is not None:  # a batch of no images
            return empty
        tokens, hw = self.stem(x)
        tokens = tokens + self.resized_pos_embed(hw)
        outs = []
        last = max(self.out_indices)
        for i, blocks in enumerate(self.stages):
            significance = None
            for j, block in enumerate(blocks):
                tokens, new_significance = block(tokens, hw, significance)
                if new_significance is not None and significance_maps is not None:
                    significance_maps.append((i, j, new_significance))
                significance = new_significance
            tokens = getattr(self, f'norm{i}')(tokens)
            B, N, C = tokens.shape
            fmap = tokens.transpose(1, 2).reshape(B, C, *hw)
            if i in self.out_indices:
                outs.append(fmap.contiguous())
            if i == last:
                break
            tokens, hw = self.downsamples[i](fmap)
        return tuple(outs)
