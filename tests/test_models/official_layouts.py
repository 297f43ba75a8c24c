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


SGFORMER_ARCHS = {  # widths, depths (spec section 3)
    's': ((64, 128, 256, 512), (2, 4, 16, 1)),
    'm': ((64, 128, 256, 512), (2, 6, 28, 2)),
    'b': ((96, 192, 384, 768), (4, 6, 24, 2)),
}
# f1/f2/f3 chunk lengths of the G blocks per stage (spec section 2.4)
SGFORMER_MERGE_CHUNKS = ((196, 56, 28), (49, 14, 7), (2, 1))


def sgformer_official_state_dict(arch='s', num_classes=1000, seed=0, dims=None, depths=None):
    """Keys and shapes of the official `sgformer_{s,m,b}` (spec section 4); ``dims``/``depths``
    override the variant's for small test models."""
    zoo_dims, zoo_depths = SGFORMER_ARCHS[arch]
    dims, depths = dims or zoo_dims, depths or zoo_depths
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.05):
        return torch.randn(*shape, generator=gen) * std

    def norm(sd, prefix, c):
        sd[f'{prefix}.weight'] = 1 + rnd(c, std=0.1)
        sd[f'{prefix}.bias'] = rnd(c)

    def linear(sd, prefix, cout, cin):
        sd[f'{prefix}.weight'] = rnd(cout, cin, std=cin**-0.5)
        sd[f'{prefix}.bias'] = rnd(cout)

    c1 = dims[0]
    sd = OrderedDict()
    sd['pos_embed'] = rnd(1, 3136, c1, std=0.5)
    for i, cin in zip((0, 2, 4), (3, c1, c1)):
        sd[f'patch_embed1.conv.{i}.c.weight'] = rnd(c1, cin, 3, 3, std=(9 * cin)**-0.5)
        norm(sd, f'patch_embed1.conv.{i}.bn', c1)
    norm(sd, 'patch_embed1.norm', c1)
    for i in range(2, 5):
        cin, c = dims[i - 2], dims[i - 1]
        sd[f'patch_embed{i}.conv1.c.weight'] = rnd(c, cin, 1, 1, std=cin**-0.5)
        sd[f'patch_embed{i}.conv2.c.weight'] = rnd(c, 1, 3, 3, std=0.3)
        sd[f'patch_embed{i}.conv3.c.weight'] = rnd(c, c, 1, 1, std=c**-0.5)
        for k in (1, 2, 3):
            norm(sd, f'patch_embed{i}.conv{k}.bn', c)
    for s, depth in enumerate(depths):
        c, sr = dims[s], (8, 4, 2, 1)[s]
        for j in range(depth):
            p = f'block{s + 1}.{j}'
            norm(sd, f'{p}.norm1', c)
            if s == 3:
                linear(sd, f'{p}.attn.q', c, c)
                linear(sd, f'{p}.attn.kv', 2 * c, c)
            elif j % 2 == 0:  # H block
                sd[f'{p}.attn.sr.weight'] = rnd(c, c, sr, sr, std=(c * sr * sr)**-0.5)
                sd[f'{p}.attn.sr.bias'] = rnd(c)
                norm(sd, f'{p}.attn.norm', c)
                linear(sd, f'{p}.attn.q1', c // 2, c)
                linear(sd, f'{p}.attn.kv1', c, c)
                linear(sd, f'{p}.attn.q2', c // 2, c)
                linear(sd, f'{p}.attn.kv2', c, c)
            else:  # G block
                linear(sd, f'{p}.attn.q', c, c)
                linear(sd, f'{p}.attn.kv1', c, c)
                linear(sd, f'{p}.attn.kv2', c, c)
                for n, k in enumerate(SGFORMER_MERGE_CHUNKS[s]):
                    sd[f'{p}.attn.f{n + 1}.weight'] = rnd(1, k, std=k**-0.5)
                    sd[f'{p}.attn.f{n + 1}.bias'] = rnd(1)
            linear(sd, f'{p}.attn.lepe_linear', c, c)
            sd[f'{p}.attn.lepe_conv.weight'] = rnd(c, 1, 3, 3, std=0.2)
            sd[f'{p}.attn.lepe_conv.bias'] = rnd(c)
            linear(sd, f'{p}.attn.proj', c, c)
            norm(sd, f'{p}.norm2', c)
            linear(sd, f'{p}.mlp.fc1', 4 * c, c)
            sd[f'{p}.mlp.dwconv.dwconv.weight'] = rnd(4 * c, 1, 3, 3, std=0.2)
            sd[f'{p}.mlp.dwconv.dwconv.bias'] = rnd(4 * c)
            linear(sd, f'{p}.mlp.fc2', c, 4 * c)
        norm(sd, f'norm{s + 1}', c)
    linear(sd, 'head', num_classes, dims[3])
    return sd
