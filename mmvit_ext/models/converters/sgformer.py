"""Official SG-Former checkpoint (OliverRensu/SG-Former) -> mmvit_ext keys.

Official (timm training dict: ``state_dict``, ``state_dict_ema``, ``args``, ...)   ours
  pos_embed                                        pos_embed
  patch_embed1.conv.{0,2,4}.c / .bn                stem.layers.{0,2,4}.conv / .norm   (bn = GN(1,C))
  patch_embed1.norm                                stem.norm
  patch_embed{i}.conv{k}.c / .bn  (i = 2..4)       downsamples.{i-2}.conv{k}.conv / .norm
  block{i}.{j}.{norm1,norm2,mlp.fc1,mlp.fc2}       stages.{i-1}.{j}.same
  block{i}.{j}.mlp.dwconv.dwconv                   stages.{i-1}.{j}.mlp.dwconv
  block{i}.{j}.attn.{lepe_linear,lepe_conv,proj}   same names
  H blocks (i <= 3, j even): sr, norm, q1, kv1, q2, kv2
                                                   attn.sr, sr_norm, global_q, global_kv,
                                                   local_q, local_kv
  G blocks (i <= 3, j odd):  q, kv1, kv2, f1, f2, f3
                                                   attn.q, row_kv, col_kv, merges.0/1/2
  F blocks (i = 4): q, kv                          same names
  norm{1..4}                                       norm{0..3}
  head                                             head.fc (classifier only)

``kv1``/``kv2`` have the same shapes in H and G blocks but mean global/local keys in one and
row-/column-sorted keys in the other, so they are mapped by the block's parity.
"""
import re
from collections import OrderedDict
from typing import Dict, Iterable, Mapping

from ...checkpoints.keys import strip_prefix, tensors_only, unwrap_state_dict

__all__ = ['SGFORMER_STATE_KEYS', 'is_official_sgformer', 'convert_sgformer',
           'load_official_sgformer', 'infer_sgformer_arch']

# The published accuracy is the EMA model's (main.py validates and selects it by EMA).
SGFORMER_STATE_KEYS = ('state_dict_ema', 'state_dict', 'model_ema', 'model')

_HYBRID = {'sr': 'sr', 'norm': 'sr_norm', 'q1': 'global_q', 'kv1': 'global_kv', 'q2': 'local_q',
           'kv2': 'local_kv'}
_GUIDED = {'q': 'q', 'kv1': 'row_kv', 'kv2': 'col_kv', 'f1': 'merges.0', 'f2': 'merges.1',
           'f3': 'merges.2'}
_SHARED = {'lepe_linear': 'lepe_linear', 'lepe_conv': 'lepe_conv', 'proj': 'proj', 'q': 'q',
           'kv': 'kv'}

_BLOCK = re.compile(r'^block(\d)\.(\d+)\.(.+)$')
_ATTN = re.compile(r'^attn\.([a-z_0-9]+)\.(weight|bias)$')


def is_official_sgformer(state_dict: Mapping) -> bool:
    """True when the keys are in the official layout (``patch_embed1.*`` / ``block1.*``)."""
    return any(k.startswith(('patch_embed1.', 'block1.')) for k in state_dict)


def _convert_block_key(stage: int, block: int, rest: str, num_stages_with_sr: int = 3) -> str:
    prefix = f'stages.{stage - 1}.{block}.'
    if rest.startswith('mlp.dwconv.dwconv.'):
        return prefix + 'mlp.dwconv.' + rest[len('mlp.dwconv.dwconv.'):]
    m = _ATTN.match(rest)
    if not m:
        return prefix + rest  # norm1, norm2, mlp.fc1, mlp.fc2
    name, param = m.groups()
    if name in ('lepe_linear', 'lepe_conv', 'proj'):
        table = _SHARED
    elif stage > num_stages_with_sr:
        table = _SHARED
    else:
        table = _HYBRID if block % 2 == 0 else _GUIDED
    # a name the block type does not have keeps its name, so the strict check reports it
    return f'{prefix}attn.{table.get(name, name)}.{param}'


def convert_sgformer(state_dict: Mapping, with_head: bool = True) -> Dict:
    """Rename official keys to the :class:`SGFormer` backbone's (plus ``head.fc.*``).

    Keys that fit nothing keep their names, so that the strict check lists them all.

    Raises:
        KeyError: not an official SG-Former state dict.
    """
    state_dict = strip_prefix(state_dict, 'module.')
    if not is_official_sgformer(state_dict):
        raise KeyError('not an official SG-Former state dict: expected keys like '
                       f"'patch_embed1.conv.0.c.weight', got {sorted(state_dict)[:5]} ...")
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('head.'):
            if with_head:
                out['head.fc.' + key[len('head.'):]] = value
            continue
        if key == 'pos_embed':
            new = key
        elif key.startswith('patch_embed1.conv.'):
            new = re.sub(r'^patch_embed1\.conv\.(\d)\.c\.', r'stem.layers.\1.conv.', key)
            new = re.sub(r'^patch_embed1\.conv\.(\d)\.bn\.', r'stem.layers.\1.norm.', new)
        elif key.startswith('patch_embed1.norm.'):
            new = 'stem.' + key[len('patch_embed1.'):]
        elif re.match(r'^patch_embed[2-4]\.', key):
            i = int(key[len('patch_embed')])
            new = re.sub(r'^patch_embed\d\.(conv\d)\.c\.', rf'downsamples.{i - 2}.\1.conv.', key)
            new = re.sub(r'^patch_embed\d\.(conv\d)\.bn\.', rf'downsamples.{i - 2}.\1.norm.', new)
        elif re.match(r'^norm[1-4]\.', key):
            new = f'norm{int(key[4]) - 1}' + key[5:]
        else:
            m = _BLOCK.match(key)
            # unknown keys pass through unchanged: the strict check names them all at once
            new = _convert_block_key(int(m.group(1)), int(m.group(2)), m.group(3)) if m else key
        out[new] = value
    return out


def load_official_sgformer(checkpoint: Mapping, ema: bool = True) -> Dict:
    """Weights of an official training dict, converted. ``ema`` picks ``state_dict_ema`` (the
    default, as the published accuracy is the EMA model's) over ``state_dict``."""
    keys = SGFORMER_STATE_KEYS if ema else ('state_dict', 'model', 'state_dict_ema', 'model_ema')
    return convert_sgformer(tensors_only(unwrap_state_dict(checkpoint, keys)))


def infer_sgformer_arch(converted: Mapping, zoo: Iterable[Mapping] = ()) -> Dict:
    """Arch dict of converted backbone keys: widths and depths from the tensors; head counts
    (which change no shape) from the arch of ``zoo`` (``SGFormer.arch_zoo.values()``) with the
    same widths and depths, else 32 channels per head."""
    if 'stem.layers.0.conv.weight' not in converted:
        raise KeyError("cannot infer the arch: 'stem.layers.0.conv.weight' is missing")
    dims, depths = [], [0, 0, 0, 0]
    for i in range(4):
        key = f'norm{i}.weight'
        if key not in converted:
            raise KeyError(f'cannot infer the arch: {key!r} is missing')
        dims.append(int(converted[key].shape[0]))
    for key in converted:
        m = re.match(r'^stages\.(\d)\.(\d+)\.', key)
        if m:
            depths[int(m.group(1))] = max(depths[int(m.group(1))], int(m.group(2)) + 1)
    for arch in zoo:
        if tuple(arch['embed_dims']) == tuple(dims) and tuple(arch['depths']) == tuple(depths):
            return dict(arch)
    return dict(embed_dims=tuple(dims), depths=tuple(depths),
                num_heads=tuple(max(2, d // 32) for d in dims))
