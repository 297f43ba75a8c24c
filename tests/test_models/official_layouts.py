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
    """Keys and shapes of the official `dilateformer_{tiny,small,base}` (spec section 4), or of
    ``arch=(embed_dims, depths)`` (the released base file has depths 2-2-18-2)."""
    c0, depths = DILATEFORMER_ARCHS[arch] if isinstance(arch, str) else arch
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


QNA_ARCHS = {  # base dim, stride-1 QnA blocks, MSA blocks, QnA heads, MSA heads, kernel (spec 3.3)
    'tiny': (64, (2, 3, 2, 0), (0, 0, 4, 2), (8, 16, 32), (0, 0, 8, 16), 3),
    'tiny_7x7': (64, (2, 3, 2, 0), (0, 0, 4, 2), (8, 16, 32), (0, 0, 8, 16), 7),
    'small': (64, (2, 3, 6, 0), (0, 0, 12, 2), (8, 16, 32), (0, 0, 8, 16), 3),
    'base': (96, (2, 3, 6, 0), (0, 0, 12, 2), (6, 12, 24), (0, 0, 12, 24), 3),
}


def qna_official_params(arch='tiny', num_classes=1000, seed=0):
    """The official Flax ``params`` tree of `qna_vit_*` (spec section 4), numpy float32."""
    import numpy as np
    base, qna_depths, msa_depths, qna_heads, msa_heads, k = QNA_ARCHS[arch]
    rng = np.random.default_rng(seed)

    def rnd(*shape, std=0.05):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def ln(c):
        return {'scale': 1 + rnd(c, std=0.1), 'bias': rnd(c)}

    def mlp(c):
        return {'Dense_0': {'kernel': rnd(c, 4 * c, std=c**-0.5), 'bias': rnd(4 * c)},
                'Dense_1': {'kernel': rnd(4 * c, c, std=(4 * c)**-0.5), 'bias': rnd(c)}}

    def qna(din, feats, heads):
        return {'query': rnd(2, feats, std=0.3), 'Wk': rnd(din, feats, std=din**-0.5),
                'to_v': {'kernel': rnd(din, feats, std=din**-0.5)},
                'to_out': {'kernel': rnd(feats, feats, std=feats**-0.5)},
                'rpe_bias': rnd(k * k, 2 * heads, std=0.5),
                'attn_scale_weights': 1 + rnd(1, 1, k * k, 2 * heads, std=0.3)}

    tree = {'StemBlock_0': {'conv_1x1': {'kernel': rnd(4, 4, 3, base, std=0.1)}}}
    for s in range(4):
        c = base * 2**s
        if msa_depths[s]:
            w = (0, 0, 14, 7)[s]
            tree[f'LSAStage_{s}'] = {
                f'MSA_Block_{i}': {
                    'LayerNorm_0': ln(c), 'LayerNorm_1': ln(c), 'MlpBlock_0': mlp(c),
                    'MultiHeadSelfAttention_0': {
                        'to_qkv': {'kernel': rnd(c, 3 * c, std=c**-0.5)},
                        'to_out': {'kernel': rnd(c, c, std=c**-0.5)},
                        'RelativePositionalEmbedding_0': {
                            'rpe_bias': rnd((2 * w - 1)**2, msa_heads[s], std=0.5)}}}
                for i in range(msa_depths[s])}
        if s < 3:
            n, h = qna_depths[s], qna_heads[s]
            stage = {f'QnA_Block_{i + 1}': {'LayerNorm_0': ln(c), 'LayerNorm_1': ln(c),
                                            'FusedKQnA_0': qna(c, c, h), 'MlpBlock_0': mlp(c)}
                     for i in range(n)}
            stage[f'QnA_Block_{n + 1}_stride_2'] = {
                'LayerNorm_0': ln(c), 'LayerNorm_1': ln(2 * c),
                'FusedKQnA_0': qna(c, 2 * c, 2 * h), 'MlpBlock_0': mlp(2 * c),
                'Conv_0': {'kernel': rnd(1, 1, c, 2 * c, std=c**-0.5)}}
            tree[f'QnAStage_{s}'] = stage
    c = base * 8
    tree['ClassificationHead_0'] = {'LayerNorm_0': ln(c), 'head_logits': {
        'kernel': rnd(c, num_classes, std=c**-0.5), 'bias': rnd(num_classes)}}
    return tree


def pack_msgpack(obj) -> bytes:
    """A minimal msgpack writer in Flax's checkpoint format (arrays as ExtType 1 holding
    ``[shape, dtype name, bytes]``), for writing official-format test files without Flax."""
    import struct

    import numpy as np
    if isinstance(obj, dict):
        n = len(obj)
        head = bytes([0x80 | n]) if n < 16 else b'\xde' + struct.pack('>H', n)
        return head + b''.join(pack_msgpack(k) + pack_msgpack(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        n = len(obj)
        head = bytes([0x90 | n]) if n < 16 else b'\xdc' + struct.pack('>H', n)
        return head + b''.join(pack_msgpack(v) for v in obj)
    if isinstance(obj, str):
        raw = obj.encode()
        return (bytes([0xa0 | len(raw)]) if len(raw) < 32 else b'\xd9' + bytes([len(raw)])) + raw
    if isinstance(obj, bytes):
        return b'\xc6' + struct.pack('>I', len(obj)) + obj
    if isinstance(obj, bool) or obj is None:
        return {None: b'\xc0', False: b'\xc2', True: b'\xc3'}[obj]
    if isinstance(obj, int):
        return bytes([obj]) if 0 <= obj < 128 else b'\xd3' + struct.pack('>q', obj)
    if isinstance(obj, float):
        return b'\xcb' + struct.pack('>d', obj)
    if isinstance(obj, np.ndarray):
        payload = pack_msgpack([list(obj.shape), obj.dtype.name, obj.tobytes()])
        return b'\xc9' + struct.pack('>I', len(payload)) + b'\x01' + payload
    raise TypeError(type(obj))


def qna_official_forward(tree, images, arch='tiny'):
    """The official QnA-ViT classifier, re-derived in float64 NumPy from the spec (sections 2-3),
    reading the Flax tree directly: per-head-interleaved ``to_qkv``, unshifted ``exp``,
    border positions out of both sums, MSA windows without padding. ``images``: (B, 3, H, W),
    H and W multiples of 224 as the official code requires. Returns logits."""
    import math

    import numpy as np
    base, qna_depths, msa_depths, qna_heads, msa_heads, k = QNA_ARCHS[arch]
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731

    def layer_norm(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu)**2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-6) * f64(p['scale']) + f64(p['bias'])

    def gelu_tanh(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def mlp(x, p):
        h = gelu_tanh(x @ f64(p['Dense_0']['kernel']) + f64(p['Dense_0']['bias']))
        return h @ f64(p['Dense_1']['kernel']) + f64(p['Dense_1']['bias'])

    def qna(x, p, heads, stride):
        B, H, W, din = x.shape
        nq, feats = p['query'].shape
        d = feats // heads
        q = f64(p['query']).reshape(nq, heads, d)
        q = q / (np.linalg.norm(q, axis=-1, keepdims=True) + 1e-6) / math.sqrt(d)
        keys = (x @ f64(p['Wk'])).reshape(B, H, W, heads, d)
        s = np.einsum('byxhd,qhd->byxqh', keys, q)
        v = (x @ f64(p['to_v']['kernel'])).reshape(B, H, W, heads, d)
        P = (k - 1) // 2
        Ho, Wo = (H + 2 * P - k) // stride + 1, (W + 2 * P - k) // stride + 1
        e = np.pad(np.exp(s), ((0, 0), (P, P), (P, P), (0, 0), (0, 0)))  # outside: 0 in both
        v = np.pad(v, ((0, 0), (P, P), (P, P), (0, 0), (0, 0)))
        rpe = f64(p['rpe_bias']).reshape(k * k, nq, heads)
        scale = f64(p['attn_scale_weights']).reshape(k * k, nq, heads)
        num, den = 0., 0.
        for u in range(k):
            for w in range(k):
                win = (slice(None), slice(u, u + stride * (Ho - 1) + 1, stride),
                       slice(w, w + stride * (Wo - 1) + 1, stride))
                weight = e[win] * np.exp(rpe[u * k + w])
                num = num + (weight * scale[u * k + w])[..., None] * v[win][:, :, :, None]
                den = den + weight
        out = (num / den[..., None]).sum(3).reshape(B, Ho, Wo, feats)  # queries summed
        return out @ f64(p['to_out']['kernel'])

    def msa(x, p, heads, ws):
        B, H, W, C = x.shape
        assert H % ws == 0 and W % ws == 0, 'the official code asserts whole windows'
        d = C // heads
        t = x.reshape(B, H // ws, ws, W // ws, ws, C).transpose(0, 1, 3, 2, 4, 5)
        t = t.reshape(-1, ws * ws, C)
        qkv = (t @ f64(p['to_qkv']['kernel'])).reshape(-1, ws * ws, heads, 3 * d)
        q, kk, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]  # interleaved per head
        rows, cols = np.divmod(np.arange(ws * ws), ws)
        idx = ((rows[:, None] - rows[None] + ws - 1) * (2 * ws - 1)
               + cols[:, None] - cols[None] + ws - 1)
        bias = f64(p['RelativePositionalEmbedding_0']['rpe_bias'])[idx].transpose(2, 0, 1)
        logits = np.einsum('nihd,njhd->nhij', q, kk) / math.sqrt(d) + bias
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        o = np.einsum('nhij,njhd->nihd', attn, v).reshape(-1, ws * ws, C) @ f64(p['to_out']['kernel'])
        o = o.reshape(B, H // ws, W // ws, ws, ws, C).transpose(0, 1, 3, 2, 4, 5)
        return o.reshape(B, H, W, C)

    x = f64(images).transpose(0, 2, 3, 1)
    B, H, W, _ = x.shape
    stem = f64(tree['StemBlock_0']['conv_1x1']['kernel'])
    x = np.einsum('byuxvc,uvco->byxo', x.reshape(B, H // 4, 4, W // 4, 4, 3), stem)
    for s in range(4):
        for i in range(msa_depths[s]):
            p = tree[f'LSAStage_{s}'][f'MSA_Block_{i}']
            x = x + msa(layer_norm(x, p['LayerNorm_0']), p['MultiHeadSelfAttention_0'],
                        msa_heads[s], (0, 0, 14, 7)[s])
            x = x + mlp(layer_norm(x, p['LayerNorm_1']), p['MlpBlock_0'])
        if s == 3:
            break
        for i in range(qna_depths[s]):
            p = tree[f'QnAStage_{s}'][f'QnA_Block_{i + 1}']
            x = x + qna(layer_norm(x, p['LayerNorm_0']), p['FusedKQnA_0'], qna_heads[s], 1)
            x = x + mlp(layer_norm(x, p['LayerNorm_1']), p['MlpBlock_0'])
        p = tree[f'QnAStage_{s}'][f'QnA_Block_{qna_depths[s] + 1}_stride_2']
        skip = x[:, ::2, ::2] @ f64(p['Conv_0']['kernel'][0, 0])
        x = skip + qna(layer_norm(x, p['LayerNorm_0']), p['FusedKQnA_0'], 2 * qna_heads[s], 2)
        x = x + mlp(layer_norm(x, p['LayerNorm_1']), p['MlpBlock_0'])
    head = tree['ClassificationHead_0']
    x = layer_norm(x, head['LayerNorm_0']).mean((1, 2))
    return x @ f64(head['head_logits']['kernel']) + f64(head['head_logits']['bias'])
