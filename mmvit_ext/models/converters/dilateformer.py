"""Official DilateFormer checkpoint (JIAOJIAYUASD/dilateformer) -> mmvit_ext keys.

Official layout (tiny shown in the spec)          ours
  patch_embed.proj.{0..9}.*                      stem.{0..9}.*
  stages.s.blocks.b.pos_embed.*                  stages.s.blocks.b.cpe.*
  stages.s.blocks.b.attn.qkv.weight [3C,C,1,1]   stages.s.blocks.b.attn.qkv.weight [3C,C] (s=0,1)
  stages.s.blocks.b.{norm1,norm2,attn.proj,mlp}  same names
  stages.s.downsample.proj.0.*                   downsamples.s.conv.*
  stages.s.downsample.proj.1.*                   downsamples.s.norm.*
  norm.*                                         norm3.*         (the final LayerNorm)
  head.*                                         head.fc.*       (classifier only)
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping

from ...checkpoints.keys import strip_prefix, tensors_only, unwrap_state_dict

__all__ = ['is_official_dilateformer', 'convert_dilateformer',
           'load_official_dilateformer', 'infer_dilateformer_arch']

_RULES = (
    (re.compile(r'^patch_embed\.proj\.'), 'stem.'),
    (re.compile(r'^(stages\.\d+\.blocks\.\d+)\.pos_embed\.'), r'\1.cpe.'),
    (re.compile(r'^stages\.(\d+)\.downsample\.proj\.0\.'), r'downsamples.\1.conv.'),
    (re.compile(r'^stages\.(\d+)\.downsample\.proj\.1\.'), r'downsamples.\1.norm.'),
    (re.compile(r'^norm\.'), 'norm3.'),
)


def is_official_dilateformer(state_dict: Mapping) -> bool:
    """True when the keys are in the official layout (``patch_embed.proj.*``)."""
    return any(k.startswith('patch_embed.proj.') for k in state_dict)


def convert_dilateformer(state_dict: Mapping, with_head: bool = True) -> Dict:
    """Rename official keys to the :class:`DilateFormer` backbone's (plus ``head.fc.*``).

    Returns backbone keys without prefix; the classifier head, if kept, as ``head.fc.*``.
    Raises:
        KeyError: the dict is not an official DilateFormer state dict.
    """
    state_dict = strip_prefix(state_dict, 'module.')
    if not is_official_dilateformer(state_dict):
        raise KeyError(
            'not an official DilateFormer state dict: expected keys like '
            f"'patch_embed.proj.0.weight', got {sorted(state_dict)[:5]} ...")
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('head.'):
            if with_head:
                out['head.fc.' + key[len('head.'):]] = value
            continue
        new_key = key
        for pattern, repl in _RULES:
            new_key = pattern.sub(repl, new_key)
        # MSDA's qkv is a 1x1 conv in the official code; ours is the equivalent Linear.
        if new_key.endswith('attn.qkv.weight') and value.dim() == 4:
            value = value.flatten(1)
        out[new_key] = value
    return out


def load_official_dilateformer(checkpoint: Mapping,
                               prefer_ema: bool = False) -> Dict:
    """Take the weights out of an official training dict and convert them.

    The official ``main.py`` saves ``model`` and ``model_ema`` (plus optimizer, args, ...);
    ``prefer_ema`` picks the EMA weights when both are present.
    """
    keys = (('model_ema', 'state_dict_ema', 'model', 'state_dict') if prefer_ema
            else ('model', 'state_dict', 'model_ema', 'state_dict_ema'))
    state_dict = tensors_only(unwrap_state_dict(checkpoint, keys))
    return convert_dilateformer(state_dict)


def infer_dilateformer_arch(converted: Mapping) -> Dict:
    """Arch dict (embed_dims, depths, num_heads) of converted backbone keys.

    Widths and depths come from the tensors; head counts do not change any shape, so the paper's
    (3, 6, 12, 24) is assumed.
    """
    if 'stem.9.weight' not in converted:
        raise KeyError("cannot infer the arch: 'stem.9.weight' (last stem conv) is missing")
    depths = [0, 0, 0, 0]
    for key in converted:
        m = re.match(r'^stages\.(\d)\.blocks\.(\d+)\.', key)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            depths[s] = max(depths[s], b + 1)
    return dict(embed_dims=int(converted['stem.9.weight'].shape[0]), depths=tuple(depths),
                num_heads=(3, 6, 12, 24))
