"""One pyramid skeleton with the attention chosen per stage: the ablation bench's backbone.

Everything but the token mixer is fixed, so that two variants differ only in their attention:
a stride-4 conv stem (two 3x3 stride-2 convs, BN, GELU), a 3x3 stride-2 conv + LayerNorm between
stages, pre-norm blocks ``x + mixer(LN(x))``, ``x + MLP(LN(x))`` (ratio 4, GELU), a depthwise
3x3 conditional position encoding before every block (no absolute table, so any input size),
linear stochastic depth, and one LayerNorm per output.

Mixers (``attentions``, one name per stage; ``attn_cfgs``, their options per stage) are the
project's attention modules and mmdet's own Swin module, not copies:

==========  ==================================================================================
``msda``    DilateFormer's multi-scale dilated attention (``kernel_size``, ``dilations``)
``qna``     QnA-ViT's learned-query attention over overlapping windows (``kernel_size``,
            ``num_queries``)
``dg``      DGT's dynamic group attention (``num_groups``, ``topk``, ``kmeans_iters``)
``sg``      SG-Former's pair: hybrid-scale (even blocks) then self-guided (odd blocks) attention,
            which merges tokens by the significance the hybrid block before it measured
            (``sr_ratio``, ``window_size``, ``merge_groups``)
``swin``    mmdet's ``ShiftWindowMSA``, shifted on odd blocks (``window_size``)
``global``  multi-head self-attention over the whole map
``none``    a depthwise ``kernel_size`` conv and a linear projection: the no-attention control
==========  ==================================================================================
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from ...attention import (DynamicGroupAttention, GlobalAttention, HybridScaleAttention,
                          MultiScaleDilatedAttention, QnAAttention, SelfGuidedAttention)
from ...attention.sg import DEFAULT_MERGE_GROUPS
from ...errors import ConfigValueError
from ..layers import (DropPath, Mlp, arch_name, check_common_arguments, check_stage_indices,
                      drop_path_rates, pretrained_to_init_cfg, resolve_arch, vit_init_)
from ..registry import MODELS
from .base import PyramidBackbone

__all__ = ['AttentionPyramid', 'MIXERS', 'build_mixer']

# the options each mixer takes (anything else in its attn_cfg is an error)
MIXERS = {
    'msda': ('kernel_size', 'dilations'),
    'qna': ('kernel_size', 'num_queries'),
    'dg': ('num_groups', 'topk', 'kmeans_iters'),
    'sg': ('sr_ratio', 'window_size', 'merge_groups'),
    'swin': ('window_size', ),
    'global': (),
    'none': ('kernel_size', ),
}


class _Mixer(nn.Module):
    """``forward(x (B, H, W, C), carry) -> (B, H, W, C)``. ``carry`` is what the block before it
    in the stage handed on (SG-Former's significance map, from a hybrid block to the guided block
    after it; None otherwise); only the SG mixer sets it, in its ``carry_out`` attribute.
    By default ``attn`` is a module on ``(B, H, W, C)`` maps itself."""
    carry_out = None

    def forward(self, x, carry):
        return self.attn(x)


class _MSDAMixer(_Mixer):
    def __init__(self, dims, heads, kernel_size=3, dilations=(1, 2, 3)):
        super().__init__()
        self.attn = MultiScaleDilatedAttention(dims, heads, kernel_size, dilations)


class _QnAMixer(_Mixer):
    def __init__(self, dims, heads, kernel_size=3, num_queries=2):
        super().__init__()
        self.attn = QnAAttention(dims, dims, heads, kernel_size, 1, num_queries)


class _TokenMixer(_Mixer):
    """Mixers on ``(B, N, C)`` token sequences."""

    def forward(self, x, carry):
        B, H, W, C = x.shape
        return self.attn(x.reshape(B, H * W, C)).reshape(B, H, W, C)


class _DGMixer(_TokenMixer):
    def __init__(self, dims, heads, num_groups, topk, kmeans_iters=3):
        super().__init__()
        self.attn = DynamicGroupAttention(dims, heads, num_groups, topk,
                                          kmeans_iters=kmeans_iters)


class _GlobalMixer(_TokenMixer):
    def __init__(self, dims, heads):
        super().__init__()
        self.attn = GlobalAttention(dims, heads)


class _SGMixer(_Mixer):
    def __init__(self, dims, heads, role, sr_ratio=4, window_size=7, merge_groups=None):
        super().__init__()
        self.role = role
        if role == 'hybrid':
            self.attn = HybridScaleAttention(dims, heads, sr_ratio, window_size)
        else:
            self.attn = SelfGuidedAttention(dims, heads, merge_groups)

    def forward(self, x, carry):
        B, H, W, C = x.shape
        tokens = x.reshape(B, H * W, C)
        if self.role == 'hybrid':
            out, self.carry_out = self.attn(tokens, (H, W))
        else:
            out = self.attn(tokens, (H, W), carry)
        return out.reshape(B, H, W, C)


class _SwinMixer(_Mixer):
    def __init__(self, dims, heads, shift, window_size=7):
        super().__init__()
        from mmdet.models.backbones.swin import ShiftWindowMSA
        # the block's own DropPath applies stochastic depth, as for every other mixer
        self.attn = ShiftWindowMSA(dims, heads, window_size, window_size // 2 if shift else 0,
                                   dropout_layer=dict(type='DropPath', drop_prob=0.))

    def forward(self, x, carry):
        B, H, W, C = x.shape
        return self.attn(x.reshape(B, H * W, C), (H, W)).reshape(B, H, W, C)


class _ConvMixer(_Mixer):
    def __init__(self, dims, heads, kernel_size=7):
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, kernel_size, padding=kernel_size // 2, groups=dims)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x, carry):
        return self.proj(self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


def build_mixer(name: str, dims: int, heads: int, index: int, stage: int,
                cfg: Optional[Dict] = None) -> _Mixer:
    """The mixer ``name`` of block ``index`` of stage ``stage`` with its options ``cfg``."""
    if name not in MIXERS:
        raise ConfigValueError(f'unknown attention {name!r}; choose one of {sorted(MIXERS)}')
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(MIXERS[name]))
    if unknown:
        raise ConfigValueError(f'attention {name!r} (stage {stage + 1}) takes the options '
                               f'{list(MIXERS[name])}, got unknown {unknown}')
    if name == 'msda':
        return _MSDAMixer(dims, heads, **cfg)
    if name == 'qna':
        return _QnAMixer(dims, heads, **cfg)
    if name == 'dg':  # DGT-T's groups and keys per stage by default
        cfg.setdefault('num_groups', (16, 8, 4, 1)[stage])
        cfg.setdefault('topk', (256, 192, 128, None)[stage])
        return _DGMixer(dims, heads, **cfg)
    if name == 'sg':
        if stage > 2 and 'merge_groups' not in cfg:
            raise ConfigValueError("attention 'sg' has default merge_groups for stages 1-3 only; "
                                   "give attn_cfgs[3]['merge_groups'] or use 'global' in stage 4 "
                                   '(as SG-Former does)')
        cfg.setdefault('sr_ratio', (8, 4, 2)[min(stage, 2)])
        cfg.setdefault('merge_groups', DEFAULT_MERGE_GROUPS[min(stage, 2)])
        role = 'hybrid' if index % 2 == 0 else 'guided'
        if role == 'hybrid':
            cfg.pop('merge_groups')
            return _SGMixer(dims, heads, role, **cfg)
        return _SGMixer(dims, heads, role, merge_groups=cfg['merge_groups'])
    if name == 'swin':
        return _SwinMixer(dims, heads, shift=index % 2 == 1, **cfg)
    if name == 'global':
        return _GlobalMixer(dims, heads)
    return _ConvMixer(dims, heads, **cfg)


class AblationBlock(nn.Module):
    """``x + CPE(x)``, ``x + mixer(LN(x))``, ``x + MLP(LN(x))`` on ``(B, H, W, C)`` maps."""

    def __init__(self, dims, mixer: _Mixer, mlp_ratio=4., drop_path=0., with_cp=False):
        super().__init__()
        self.pos_embed = nn.Conv2d(dims, dims, 3, padding=1, groups=dims)
        self.norm1 = nn.LayerNorm(dims)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.with_cp = with_cp

    def _forward(self, x, carry):
        x = x + self.pos_embed(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.mixer(self.norm1(x), carry))
        carry, self.mixer.carry_out = self.mixer.carry_out, None
        return x + self.drop_path(self.mlp(self.norm2(x))), carry

    def forward(self, x, carry=None):
        """``(x, carry) -> (x, carry for the next block)``; the carry is an argument and a
        result (not state), so that checkpointed blocks recompute with the right one."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, carry, use_reentrant=False)
        return self._forward(x, carry)


class _ConvBN(nn.Sequential):
    def __init__(self, cin, cout, act=True):
        layers = [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)]
        super().__init__(*(layers + [nn.GELU()] if act else layers))


class _Downsample(nn.Module):
    """3x3 stride-2 conv + LayerNorm, ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C')``."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 2, 1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


@MODELS.register_module()
class AttentionPyramid(PyramidBackbone):
    """A 4-stage pyramid whose attention is chosen per stage (see the module doc).

    Args:
        arch (str | dict): ``'tiny'`` (Swin-T's widths, depths and heads with MSDA in stages 1-2
            and global attention in 3-4) or a dict with ``embed_dims`` (an int C: stages C, 2C,
            4C, 8C, or 4 ints), ``depths``, ``num_heads`` and ``attentions`` (4 each), and
            optionally ``attn_cfgs`` (4 dicts of mixer options) and ``mlp_ratio``.
        in_channels: image channels.
        drop_path_rate: stochastic depth, linear over all blocks.
        out_indices, frozen_stages, with_cp, init_cfg: the usual backbone contract; stages
            after the last output are not run.
    """
    arch_zoo = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                     attentions=('msda', 'msda', 'global', 'global')),
    }
    arch_aliases = {'t': 'tiny'}

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 arch_overrides: Optional[Dict] = None,
                 in_channels: int = 3,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg=pretrained_to_init_cfg(pretrained, init_cfg,
                                                         'AttentionPyramid'))
        check_common_arguments('AttentionPyramid', in_channels=in_channels, with_cp=with_cp)
        self.arch_name = arch_name(arch, self.arch_zoo, self.arch_aliases, arch_overrides)
        arch = resolve_arch(arch, self.arch_zoo, self.arch_aliases,
                            ('embed_dims', 'depths', 'num_heads', 'attentions'),
                            'AttentionPyramid', optional=('attn_cfgs', 'mlp_ratio'),
                            overrides=arch_overrides)
        self.arch_settings = dict(arch)  # as built (for messages: arch_hint)
        dims = arch['embed_dims']
        dims = [dims * 2**i for i in range(4)] if isinstance(dims, int) else list(dims)
        depths, heads = tuple(arch['depths']), tuple(arch['num_heads'])
        attentions = tuple(arch['attentions'])
        attn_cfgs = tuple(arch.get('attn_cfgs') or ({}, ) * 4)
        for key, value in (('embed_dims', dims), ('depths', depths), ('num_heads', heads),
                           ('attentions', attentions), ('attn_cfgs', attn_cfgs)):
            if len(value) != self.num_stages:
                raise ConfigValueError(f'AttentionPyramid arch {key!r} needs 4 values (one per '
                                       f'stage), got {value}')
        for i, (c, h) in enumerate(zip(dims, heads)):
            if c % h:
                raise ConfigValueError(f'stage {i + 1}: embed_dims {c} is not divisible by '
                                       f'num_heads {h}')
        self.out_indices = check_stage_indices(out_indices, frozen_stages, self.num_stages)
        self.frozen_stages = frozen_stages
        self.embed_dims = self.num_features = dims
        self.depths, self.num_heads, self.attentions = depths, heads, attentions

        self.stem = nn.Sequential(_ConvBN(in_channels, dims[0] // 2),
                                  _ConvBN(dims[0] // 2, dims[0], act=False))
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        self.downsamples = nn.ModuleList(_Downsample(dims[i], dims[i + 1]) for i in range(3))
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            self.stages.append(nn.ModuleList(
                AblationBlock(dims[i], build_mixer(attentions[i], dims[i], heads[i], j, i,
                                                   attn_cfgs[i]),
                              arch.get('mlp_ratio', 4.), dpr[sum(depths[:i]) + j], with_cp)
                for j in range(depths[i])))
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i]))
        self._freeze_stages()  # now: DDP wraps the model before train() first runs

    def init_from_scratch(self):
        vit_init_(self)  # Linear/conv/norm layers; the mixers' own parameters keep their init
        for m in self.modules():
            if type(m).__name__ == 'WindowMSA':  # mmdet's relative position bias table
                m.init_weights()

    def frozen_modules(self, num_frozen):
        frozen = [self.stem]
        for i in range(num_frozen):
            frozen += [self.stages[i], getattr(self, f'norm{i}')]
            if i > 0:
                frozen.append(self.downsamples[i - 1])
        return frozen

    def layer_id(self, parts):
        if parts[0] == 'downsamples':  # downsamples[i] opens stage i + 1
            return sum(self.depths[:int(parts[1]) + 1])
        return super().layer_id(parts)

    def forward(self, x: torch.Tensor):
        empty = self.check_input(x)
        if empty is not None:
            return empty
        x = self.stem(x).permute(0, 2, 3, 1)  # (B, H/4, W/4, C)
        outs, last = [], max(self.out_indices)
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)
            carry = None
            for block in blocks:
                x, carry = block(x, carry)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())
            if i == last:
                break
        return tuple(outs)
