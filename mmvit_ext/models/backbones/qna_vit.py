"""QnA-ViT: Learned Queries for Efficient Local Attention (CVPR 2022, arXiv 2112.11435).

A 4x4 stride-4 stem (no bias, no norm); stages 1-2 of QnA blocks, stage 3 of windowed MSA blocks
then QnA blocks, stage 4 of MSA blocks; the last block of stages 1-3 is a stride-2 QnA block with
a 1x1 stride-2 conv skip that doubles the width. Pre-norm blocks with LayerNorm eps 1e-6 and a
tanh-GELU MLP. Everything runs on NHWC maps.

Any input size: the stem pads like Flax's 'SAME' (nothing at multiples of 4), QnA layers take
any size (masked borders), and the MSA windows pad and mask (see :class:`WindowMSA`). Stage 4's
7x7 windows would not mix at detection sizes; ``msa_modes`` picks 'window' (official) or
'global' attention per MSA stage ('global' equals 'window' whenever the map is one window, as at
224 input).
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from ...attention.qna import QnAAttention, WindowMSA, lecun_normal_
from ...attention.shapes import ceil_div, zero_pad
from ...checkpoints import CheckpointMismatchError
from ...errors import ConfigValueError
from ..converters.flax_msgpack import FlaxMsgpackError, is_flax_msgpack_file
from ..converters.qna import load_official_qna
from ..layers import (DropPath, Mlp, arch_name, check_common_arguments, check_stage_indices,
                      drop_path_rates, pretrained_to_init_cfg, resolve_arch)
from ..registry import MODELS
from .base import PyramidBackbone, stage_blocks

__all__ = ['QnAViT']


class QnABlock(nn.Module):
    """``x + DropPath(mixer(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``, NHWC.

    ``kind``: 'msa', 'qna' or 'down' (stride-2 QnA to 2C with a 1x1 stride-2 conv skip and no
    DropPath on the attention branch, as in the official code).
    """

    def __init__(self, dims, kind, num_heads, kernel_size=3, window_size=7, msa_mode='window',
                 drop_path_rate=0., with_cp=False):
        super().__init__()
        self.kind, self.with_cp = kind, with_cp
        out_dims = 2 * dims if kind == 'down' else dims
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        if kind == 'msa':
            self.attn = WindowMSA(dims, num_heads, window_size, msa_mode)
        elif kind == 'qna':
            self.attn = QnAAttention(dims, dims, num_heads, kernel_size, 1)
        elif kind == 'down':
            self.attn = QnAAttention(dims, out_dims, 2 * num_heads, kernel_size, 2)
            self.skip = nn.Conv2d(dims, out_dims, 1, 2, bias=False)
        else:
            raise ConfigValueError(f"block kind must be 'msa', 'qna' or 'down', got {kind!r}")
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(out_dims, eps=1e-6)
        # Flax's nn.gelu is the tanh approximation
        self.mlp = Mlp(out_dims, 4 * out_dims, dict(type='GELU', approximate='tanh'))

    def _forward(self, x):
        if self.kind == 'down':
            skip = self.skip(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            x = skip + self.attn(self.norm1(x))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        # norm2 runs inside the MLP: in training its memory-lean form then keeps x, not also
        # norm2(x) (QnA-ViT's activations need it to stay within Swin-T's x the FLOPs ratio)
        return x + self.drop_path(self.mlp(x, self.norm2))

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def _read_flax_checkpoint(path: str) -> Optional[Dict]:
    """An official Flax msgpack file (``checkpoint_<step>``), converted; None for torch files."""
    if not is_flax_msgpack_file(path):
        return None
    try:
        return load_official_qna(path, with_head=False)
    except (KeyError, FlaxMsgpackError) as e:
        raise CheckpointMismatchError(f'{path} is a Flax msgpack file but not an official '
                                      f'QnA-ViT checkpoint: {e}') from e


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Flax/TF 'SAME' padding of an NCHW map (extra pixel at the bottom/right), for
    ``kernel >= stride`` (the stem: 4 and 4). Exporters always see the pad (by zero where
    nothing is needed): a shape test would be frozen into the exported graph."""
    if kernel < stride:
        raise ValueError(f'same_pad supports kernel >= stride, got {kernel} < {stride}')
    pads = []
    for size in x.shape[:1:-1]:  # W, then H
        total = (ceil_div(size, stride) - 1) * stride + kernel - size  # >= 0 when kernel >= stride
        pads += [total // 2, total - total // 2]
    return zero_pad(x, pads)


@MODELS.register_module()
class QnAViT(PyramidBackbone):
    """QnA-ViT backbone for mmdet / mmseg / mmpretrain.

    Args:
        arch (str | dict): 'tiny', 'tiny_7x7', 'small', 'base' (or 't', 't7', 's', 'b'), or a dict
            with ``embed_dims`` (int), ``qna_depths``, ``msa_depths`` (4 ints: stride-1 QnA and
            MSA blocks per stage), ``qna_heads`` (3 ints), ``msa_heads`` (4 ints, 0 where unused)
            and ``kernel_size``.
        window_sizes: MSA windows per stage (14 at stride 16, 7 at stride 32).
        msa_modes: 'window' or 'global' per stage (only stages with MSA blocks matter).
        drop_path_rate: linear over the official slot order (per stage: MSA, QnA, downsample).
        out_indices: taps before each downsample block (strides 4/8/16/32), each through its own
            LayerNorm ``norm{i}``.
        frozen_stages, with_cp, init_cfg: as for the other backbones.
        norm_eval: taken so that one config line fits every backbone (mmdet's ResNet configs
            set it); QnA-ViT has no BatchNorm, so it changes nothing.
    """
    arch_zoo = {
        'tiny': dict(embed_dims=64, qna_depths=(2, 3, 2, 0), msa_depths=(0, 0, 4, 2),
                     qna_heads=(8, 16, 32), msa_heads=(0, 0, 8, 16), kernel_size=3),
        'tiny_7x7': dict(embed_dims=64, qna_depths=(2, 3, 2, 0), msa_depths=(0, 0, 4, 2),
                         qna_heads=(8, 16, 32), msa_heads=(0, 0, 8, 16), kernel_size=7),
        'small': dict(embed_dims=64, qna_depths=(2, 3, 6, 0), msa_depths=(0, 0, 12, 2),
                      qna_heads=(8, 16, 32), msa_heads=(0, 0, 8, 16), kernel_size=3),
        'base': dict(embed_dims=96, qna_depths=(2, 3, 6, 0), msa_depths=(0, 0, 12, 2),
                     qna_heads=(6, 12, 24), msa_heads=(0, 0, 12, 24), kernel_size=3),
    }
    arch_aliases = {'t': 'tiny', 't7': 'tiny_7x7', 's': 'small', 'b': 'base'}
    num_stages = 4

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 arch_overrides: Optional[Dict] = None,
                 in_channels: int = 3,
                 window_sizes: Sequence[int] = (0, 0, 14, 7),
                 msa_modes: Sequence[str] = ('window', 'window', 'window', 'window'),
                 drop_path_rate: float = 0.05,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg=pretrained_to_init_cfg(pretrained, init_cfg, 'QnAViT'))
        check_common_arguments('QnAViT', in_channels=in_channels, with_cp=with_cp,
                               norm_eval=norm_eval)
        self.norm_eval = norm_eval  # no BatchNorm here: see the docstring
        self.arch_name = arch_name(arch, self.arch_zoo, self.arch_aliases, arch_overrides)
        arch = resolve_arch(arch, self.arch_zoo, self.arch_aliases,
                            ('embed_dims', 'qna_depths', 'msa_depths', 'qna_heads', 'msa_heads',
                             'kernel_size'), 'QnAViT',
                            overrides=arch_overrides)
        self.arch_settings = dict(arch)  # as built (for messages: arch_hint)
        out_indices = check_stage_indices(out_indices, frozen_stages, self.num_stages)
        qna_depths, msa_depths = tuple(arch['qna_depths']), tuple(arch['msa_depths'])
        base = arch['embed_dims']
        self.embed_dims = [base * 2**i for i in range(self.num_stages)]
        self.num_features = self.embed_dims
        self.out_indices, self.frozen_stages = out_indices, frozen_stages
        # official slot order: per stage MSA blocks, QnA blocks, then the downsample block
        kinds = [['msa'] * msa_depths[s] + ['qna'] * qna_depths[s] + (['down'] if s < 3 else [])
                 for s in range(self.num_stages)]
        self.depths = tuple(len(k) for k in kinds)
        dpr = drop_path_rates(drop_path_rate, sum(self.depths))

        self.stem = nn.Conv2d(in_channels, base, 4, 4, bias=False)
        self.stages = nn.ModuleList()
        for s, stage_kinds in enumerate(kinds):
            blocks = nn.ModuleList()
            for j, kind in enumerate(stage_kinds):
                heads = arch['msa_heads'][s] if kind == 'msa' else arch['qna_heads'][s]
                blocks.append(QnABlock(self.embed_dims[s], kind, heads, arch['kernel_size'],
                                       window_sizes[s], msa_modes[s],
                                       dpr[sum(self.depths[:s]) + j], with_cp))
            self.stages.append(blocks)
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.embed_dims[i], eps=1e-6))
        self._freeze_stages()  # now: DDP wraps the model before train() first runs

    def pretrained_options(self):
        return dict(read_foreign=_read_flax_checkpoint)  # the official Flax file, converted

    @classmethod
    def arch_from_weights(cls, state_dict):
        # A block is MSA where it has 'attn.qkv', the downsampler where it has 'skip', else a
        # stride-1 QnA block. Relative-bias tables give the heads (MSA: one column per head;
        # QnA: one per head and query, the downsampler with twice its stage's heads) and the
        # QnA window (kernel_size ** 2 rows).
        arch = dict(embed_dims=int(state_dict['stem.weight'].shape[0]), qna_depths=[],
                    msa_depths=[], qna_heads=[], msa_heads=[])
        for s, blocks in enumerate(stage_blocks(state_dict)):
            msa = [b for b in blocks if f'{b}.attn.qkv.weight' in state_dict]
            down = [b for b in blocks if f'{b}.skip.weight' in state_dict]
            arch['msa_depths'].append(len(msa))
            arch['qna_depths'].append(len(blocks) - len(msa) - len(down))
            arch['msa_heads'].append(int(state_dict[f'{msa[0]}.attn.rpe_bias'].shape[1])
                                     if msa else 0)
            if down:
                bias, query = (state_dict[f'{down[0]}.attn.{k}'] for k in ('rpe_bias', 'query'))
                arch['qna_heads'].append(int(bias.shape[1]) // int(query.shape[0]) // 2)
                arch['kernel_size'] = round(int(bias.shape[0])**0.5)
        return arch

    def init_from_scratch(self):
        # Official (Flax) scheme: lecun_normal kernels, zero biases, zero relative biases,
        # N(0, 0.02) attention scales, queries truncated-normal in [-2, 2] times sqrt(1 / d).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                lecun_normal_(m.weight, m.in_features)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                lecun_normal_(m.weight, m.weight[0].numel())
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, WindowMSA):
                nn.init.zeros_(m.rpe_bias)
            elif isinstance(m, QnAAttention):
                m.reset_parameters()

    def frozen_modules(self, num_frozen):
        return [self.stem] + [self.stages[i] for i in range(num_frozen)]

    def forward(self, x: torch.Tensor):
        empty = self.check_input(x)
        if empty is not None:  # a batch of no images
            return empty
        x = self.stem(same_pad(x, 4, 4)).permute(0, 2, 3, 1)  # NHWC
        outs = []
        last = max(self.out_indices)
        for s, blocks in enumerate(self.stages):
            for block in blocks:
                if block.kind == 'down':
                    break
                x = block(x)
            if s in self.out_indices:  # tap before the downsample block
                outs.append(getattr(self, f'norm{s}')(x).permute(0, 3, 1, 2).contiguous())
            if s == last:
                break
            if blocks[-1].kind == 'down':
                x = blocks[-1](x)
        return tuple(outs)
