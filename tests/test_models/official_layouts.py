"""State dicts in the official repositories' key layouts, built from the spec tables (random values).

Used to test converters without the real (non-downloadable) files.
"""
from collections import OrderedDict

import torch

DILATEFORMER_ARCHS = {
    'tiny': (72, (2, 2, 6, 2)),
    'small': (72, (3, 5, 8, 3)),
    'base': (96, (4, 8, 10, 3)),
}


def _bn(sd, prefix, c, gen):
    sd[f'{prefix}.weight'] = torch.rand(c, generator=gen) + 0.5
    sd[f'{prefix}.bias'] = torch.randn(c, generator=gen) * 0.1
    sd[f'{prefix}.running_mean'] = torch.randn(c, generator=gen) * 0.1
    sd[f'{prefix}.running_var'] = torch.rand(c, generator=gen) + 0.5
    sd[f'{prefix}.num_batches_tracked'] = torch.tensor(100)


def dilateformer_official_state_dict(arch='tiny', num_classes=1000, seed=0):
    """Keys and shapes of the official `dilateformer_{tiny,small,base}` (spec section 4)."""
    c0, depths = DILATEFORMER_ARCHS[arch]
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.05):
        return torch.randn(*shape, generator=gen) * std

    sd = OrderedDict()
    sd['patch_embed.proj.0.weight'] = rnd(16, 3, 3, 3, std=0.2)
    _bn(sd, 'patch_embed.proj.1', 16, gen)
    sd['patch_embed.proj.3.weight'] = rnd(32, 16, 3, 3, std=0.1)
    _bn(sd, 'patch_embed.proj.4', 32, gen)
    sd['patch_embed.proj.6.weight'] = rnd(64, 32, 3, 3, std=0.06)
    _bn(sd, 'patch_embed.proj.7', 64, gen)
    sd['patch_embed.proj.9.weight'] = rnd(c0, 64, 3, 3, std=0.04)
    for s, depth in enumerate(depths):
        c = c0 * 2**s
        for b in range(depth):
            p = f'stages.{s}.blocks.{b}'
            sd[f'{p}.pos_embed.weight'] = rnd(c, 1, 3, 3, std=0.1)
            sd[f'{p}.pos_embed.bias'] = rnd(c)
            sd[f'{p}.norm1.weight'] = 1 + rnd(c)
            sd[f'{p}.norm1.bias'] = rnd(c)
            sd[f'{p}.attn.qkv.weight'] = rnd(3 * c, c, 1, 1) if s < 2 else rnd(3 * c, c)
            sd[f'{p}.attn.qkv.bias'] = rnd(3 * c)
            sd[f'{p}.attn.proj.weight'] = rnd(c, c)
            sd[f'{p}.attn.proj.bias'] = rnd(c)
            sd[f'{p}.norm2.weight'] = 1 + rnd(c)
            sd[f'{p}.norm2.bias'] = rnd(c)
            sd[f'{p}.mlp.fc1.weight'] = rnd(4 * c, c)
            sd[f'{p}.mlp.fc1.bias'] = rnd(4 * c)
            sd[f'{p}.mlp.fc2.weight'] = rnd(c, 4 * c)
            sd[f'{p}.mlp.fc2.bias'] = rnd(c)
        if s < 3:
            sd[f'stages.{s}.downsample.proj.0.weight'] = rnd(2 * c, c, 3, 3, std=0.03)
            sd[f'stages.{s}.downsample.proj.0.bias'] = rnd(2 * c)
            _bn(sd, f'stages.{s}.downsample.proj.1', 2 * c, gen)
    sd['norm.weight'] = 1 + rnd(8 * c0)
    sd['norm.bias'] = rnd(8 * c0)
    sd['head.weight'] = rnd(num_classes, 8 * c0)
    sd['head.bias'] = rnd(num_classes)
    return sd
