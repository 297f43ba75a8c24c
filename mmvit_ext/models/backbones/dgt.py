"""DGT-style backbone: Dynamic Group Transformer (Liu, Wu, Liu, Guo; IJCAI 2022, arXiv 2203.03937).

No official code, weights or architecture table of DGT exist. What is known: DG-Attention (k-means
query groups, top-k keys per group), a convolutional stem, conditional position embeddings and an
inverted-residual FFN, the terms of the CMT family. So everything below is **this project's
design, "DGT-style"**; no paper number is reproduced:

* stem: three 3x3 convs (the first with stride 2), each followed by GELU then BatchNorm (CMT);
* before every stage a 2x2 stride-2 conv + LayerNorm (strides 4/8/16/32 overall);
* blocks: ``x + dwconv3x3(x)`` (conditional position encoding), then
  ``x + DropPath(DGA(LN(x)))`` and ``x + DropPath(IRFFN(LN(x)))``;
* IRFFN: 1x1 conv -> GELU -> BN, ``+ dwconv3x3`` -> GELU -> BN, 1x1 conv -> BN (CMT; the 1x1
  convs as Linear layers on channels-last tokens);
* DG-Attention in every stage; stage 4 with one group and all keys, i.e. global attention (its
  map is 7x7 at 224 and about 1,000 tokens at detection sizes).

Any input size: the stem and the 2x2 patch convs pad odd sizes at the bottom/right, so the maps
are ``ceil(H / 4)``, ... ``ceil(H / 32)``; DG-Attention has no windows and needs no padding.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from ...attention import DynamicGroupAttention
from ...attention.shapes import ceil_div, pad_hw
from ...errors import ConfigValueError
from ..layers import (DropPath, arch_name, check_common_arguments, check_stage_indices,
                      drop_path_rates, pretrained_to_init_cfg, resolve_arch, vit_init_)
from ..layers.gelu_bn import gelu_bn
from ..layers.irffn import irffn
from ..registry import MODELS
from .base import PyramidBackbone, stage_blocks

__all__ = ['DGT']


class ConvGeluBN(nn.Sequential):
    """Conv -> GELU -> BatchNorm (CMT's order). GELU and BN run in one form
    (``layers/gelu_bn.py``: the memory-lean one keeps only the conv output for backward)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups),
            nn.GELU(), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        return gelu_bn(self[0](x), self[2])


class IRFFN(nn.Module):
    """Inverted residual FFN on NHWC maps: expand, depthwise 3x3 with a residual, project.

    CMT's 1x1 convs are Linear layers on the channels-last tokens (the same product, on the fast
    GEMM path: the 1x1 conv on a channels-last view took a slow conv kernel on CPU), and each
    BatchNorm2d normalises the channels-last view, over (N, H, W) as usual. In training,
    everything up to ``fc2`` runs as one autograd function that keeps one of the six 4x-wide
    activations and recomputes the rest (element-wise ops, the depthwise conv) in backward
    (``models/layers/irffn.py``, the memory-lean form): the IRFFN had kept 3x the activations
    of a plain MLP. With its BatchNorms in eval mode the last two fold into ``fc2``.
    """

    def __init__(self, dims, ratio=4.):
        super().__init__()
        hidden = int(dims * ratio)
        self.fc1 = nn.Linear(dims, hidden)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Linear(hidden, dims)
        self.norm3 = nn.BatchNorm2d(dims)

    def forward(self, x):  # (B, H, W, C)
        return irffn(x, self.fc1, self.norm1, self.dwconv, self.norm2, self.fc2, self.norm3)


class DGTBlock(nn.Module):
    """CPE, then pre-norm DG-Attention and IRFFN, on NHWC maps."""

    def __init__(self, dims, num_heads, num_groups, topk, mlp_ratio=4., kmeans_iters=3,
                 drop_path_rate=0., with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.cpe = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims)
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.attn = DynamicGroupAttention(dims, num_heads, num_groups, topk, kmeans_iters)
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.ffn = IRFFN(dims, mlp_ratio)

    def _forward(self, x):
        B, H, W, C = x.shape
        x = x + self.cpe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x).reshape(B, H * W, C)).reshape(B, H, W, C))
        return x + self.drop_path(self.ffn(self.norm2(x)))

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class PatchConv(nn.Module):
    """2x2 stride-2 conv + LayerNorm, NCHW in, NHWC out; odd sizes padded at the bottom/right."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 2, 2)
        self.norm = nn.LayerNorm(out_ch, eps=1e-6)

    def forward(self, x):  # NCHW
        H, W = x.shape[2:]
        # ceil_div, not H % 2: a traced Mod nested in the next stage's sizes makes
        # torch.export's symbolic simplification much slower
        x = pad_hw(x, ceil_div(H, 2) * 2, ceil_div(W, 2) * 2)
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


@MODELS.register_module()
class DGT(PyramidBackbone):
    """DGT-style backbone (hyper-parameters are this project's; see configs/dgt/README.md).

    Args:
        arch (str | dict): 'tiny', 'small', 'base' (or 't', 's', 'b'), or a dict with
            ``embed_dims``, ``depths``, ``num_heads`` (4 ints each), ``num_groups`` and ``topk``
            (4 values; ``topk`` None = all keys) and ``stem_channels``.
        mlp_ratio: IRFFN expansion.
        kmeans_iters: k-means iterations of every DG-Attention.
        drop_path_rate: linear over all blocks.
        norm_eval: keep the BatchNorm layers (stem, IRFFN) in eval mode while training, e.g.
            with few images per GPU.
        out_indices, frozen_stages, with_cp, init_cfg: as for the other backbones; each output is
            its stage's LayerNorm ``norm{i}``.
    """
    routes_tokens = True  # k-means groups and top-k keys: rounding can move a token
    arch_zoo = {
        # sized to Swin-T/S/B's compute at 224: 4.63 / 8.87 / 15.38 GMACs (4.5 / 8.7 / 15.4)
        'tiny': dict(embed_dims=(64, 128, 256, 512), depths=(3, 4, 12, 3),
                     num_heads=(2, 4, 8, 16), num_groups=(16, 8, 4, 1),
                     topk=(256, 192, 128, None), stem_channels=32),
        'small': dict(embed_dims=(96, 192, 384, 768), depths=(2, 4, 13, 2),
                      num_heads=(3, 6, 12, 24), num_groups=(16, 8, 4, 1),
                      topk=(256, 192, 128, None), stem_channels=32),
        'base': dict(embed_dims=(128, 256, 512, 1024), depths=(2, 4, 13, 2),
                     num_heads=(4, 8, 16, 32), num_groups=(16, 8, 4, 1),
                     topk=(256, 192, 128, None), stem_channels=48),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base'}
    num_stages = 4

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 arch_overrides: Optional[Dict] = None,
                 in_channels: int = 3,
                 mlp_ratio: float = 4.,
                 kmeans_iters: int = 3,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg=pretrained_to_init_cfg(pretrained, init_cfg, 'DGT'))
        check_common_arguments('DGT', in_channels=in_channels, mlp_ratio=mlp_ratio,
                               with_cp=with_cp, norm_eval=norm_eval)
        self.norm_eval = norm_eval
        self.arch_name = arch_name(arch, self.arch_zoo, self.arch_aliases, arch_overrides)
        arch = resolve_arch(arch, self.arch_zoo, self.arch_aliases,
                            ('embed_dims', 'depths', 'num_heads', 'num_groups', 'topk',
                             'stem_channels'), 'DGT',
                            overrides=arch_overrides)
        self.arch_settings = dict(arch)  # as built (for messages: arch_hint)
        for key in ('embed_dims', 'depths', 'num_heads', 'num_groups', 'topk'):
            if len(arch[key]) != self.num_stages:
                raise ConfigValueError(f'DGT arch {key!r} needs {self.num_stages} values, got '
                                       f'{arch[key]}')
        out_indices = check_stage_indices(out_indices, frozen_stages, self.num_stages)
        self.embed_dims = list(arch['embed_dims'])
        self.num_features = self.embed_dims
        self.depths = tuple(arch['depths'])
        self.out_indices, self.frozen_stages = out_indices, frozen_stages
        sc = arch['stem_channels']
        self.stem = nn.Sequential(ConvGeluBN(in_channels, sc, 3, 2), ConvGeluBN(sc, sc, 3),
                                  ConvGeluBN(sc, sc, 3))
        dpr = drop_path_rates(drop_path_rate, sum(self.depths))
        self.patch_convs = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            dims = self.embed_dims[i]
            self.patch_convs.append(PatchConv(sc if i == 0 else self.embed_dims[i - 1], dims))
            self.stages.append(nn.ModuleList(
                DGTBlock(dims, arch['num_heads'][i], arch['num_groups'][i], arch['topk'][i],
                         mlp_ratio, kmeans_iters, dpr[sum(self.depths[:i]) + j], with_cp)
                for j in range(self.depths[i])))
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.embed_dims[i], eps=1e-6))
        self._freeze_stages()  # now: DDP wraps the model before train() first runs

    @classmethod
    def arch_from_weights(cls, state_dict):
        # heads, groups and top-k change no shape: the config keeps its own
        return dict(embed_dims=[int(state_dict[f'patch_convs.{i}.proj.weight'].shape[0])
                                for i in range(cls.num_stages)],
                    depths=[len(blocks) for blocks in stage_blocks(state_dict)],
                    stem_channels=int(state_dict['stem.0.0.weight'].shape[0]))

    def init_from_scratch(self):
        vit_init_(self)

    def frozen_modules(self, num_frozen):
        return [self.stem] + [m for i in range(num_frozen)
                              for m in (self.patch_convs[i], self.stages[i])]

    def layer_id(self, parts):
        if parts[0] == 'patch_convs':  # with the first block of its stage
            return sum(self.depths[:int(parts[1])]) + 1
        return super().layer_id(parts)

    def forward(self, x: torch.Tensor):
        empty = self.check_input(x)
        if empty is not None:  # a batch of no images
            return empty
        x = self.stem(x)
        outs = []
        last = max(self.out_indices)
        for i in range(self.num_stages):
            x = self.patch_convs[i](x)  # NHWC
            for block in self.stages[i]:
                x = block(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())
            if i == last:
                break
            x = x.permute(0, 3, 1, 2)
        return tuple(outs)
