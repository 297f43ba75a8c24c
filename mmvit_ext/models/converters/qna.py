"""Official QnA-ViT Flax checkpoint (moabarar/qna) -> mmvit_ext keys.

The file is a Flax msgpack of a whole TrainState (or bare params); the weights are its ``params``
tree. Transforms (spec table):

  StemBlock_0/conv_1x1/kernel (4,4,3,C) HWIO        stem.weight, permuted to OIHW
  QnAStage_s/QnA_Block_i (stride 1, i = 1..n) and
  QnAStage_s/QnA_Block_{n+1}_stride_2 (downsample) stages.s.{MSA blocks first, then these}
    LayerNorm_0/1 {scale,bias}                      norm1/norm2 {weight,bias}
    FusedKQnA_0/query (2,F), Wk (Din,F), rpe_bias    attn.query, attn.key_weight, attn.rpe_bias
    FusedKQnA_0/attn_scale_weights (1,1,k*k,2h)      attn.attn_scale (k*k, 2h)
    FusedKQnA_0/to_v|to_out/kernel (in,out)          attn.to_v|to_out.weight, transposed
    MlpBlock_0/Dense_0|Dense_1/{kernel,bias}         mlp.fc1|fc2, kernel transposed
    Conv_0/kernel (1,1,C,2C) (downsample skip)       skip.weight, permuted to OIHW
  LSAStage_s/MSA_Block_i                             stages.s.{first blocks}
    MultiHeadSelfAttention_0/to_qkv/kernel (C,3C)    attn.qkv.weight: columns reordered from per-head
                                                     interleaved (heads, 3, d) to (3, heads, d),
                                                     then transposed
    MultiHeadSelfAttention_0/to_out/kernel           attn.proj.weight, transposed
    .../RelativePositionalEmbedding_0/rpe_bias       attn.rpe_bias (Swin's table and index)
  ClassificationHead_0/LayerNorm_0                  norm3 (the final norm is our stage-4 output norm)
  ClassificationHead_0/head_logits                  head.fc (classifier only)
"""
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping

import numpy as np
import torch

__all__ = ['params_tree', 'convert_qna', 'load_official_qna', 'is_official_qna',
           'msa_qkv_kernel_to_weight']

_TOP = ('StemBlock_0', 'QnAStage_0', 'LSAStage_2', 'ClassificationHead_0')


def is_official_qna(tree: Mapping) -> bool:
    return isinstance(tree, Mapping) and 'StemBlock_0' in tree


def params_tree(checkpoint: Mapping) -> Dict:
    """The ``params`` tree of a TrainState dict (``{'params': ...}``, possibly nested once more
    as Flax's ``{'params': {'params': ...}}`` collection), or the tree itself."""
    tree = checkpoint
    for _ in range(3):
        if is_official_qna(tree):
            return dict(tree)
        if isinstance(tree, Mapping) and 'params' in tree:
            tree = tree['params']
        else:
            break
    keys = sorted(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint)
    raise KeyError(f'not an official QnA-ViT checkpoint: no params tree with {_TOP[0]!r} '
                   f'(top-level keys: {keys})')


def _flatten(tree: Mapping, prefix: str = '') -> Dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f'{prefix}{k}/'))
        else:
            array = np.asarray(v)
            if not np.issubdtype(array.dtype, np.number):  # a string or object leaf
                raise KeyError(f"entry '{prefix}{k}' is {type(v).__name__} {str(v)[:40]!r}, "
                               'not an array of numbers')
            out[f'{prefix}{k}'] = array
    return out


def _block_order(names):
    """Sort block names by their number (``QnA_Block_3_stride_2`` -> 3)."""
    return sorted(names, key=lambda n: int(re.search(r'_(\d+)', n).group(1)))


def _t(a):
    array = np.asarray(a)
    if not np.issubdtype(array.dtype, np.number):  # a string or object leaf
        raise KeyError(f'a leaf is {type(a).__name__} {str(a)[:40]!r}, not an array of numbers')
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def msa_qkv_kernel_to_weight(kernel: np.ndarray, num_heads: int) -> np.ndarray:
    """Official ``to_qkv`` kernel ``(C, 3C)``, columns ``(heads, 3, d)`` -> a ``(3C, C)`` Linear
    weight whose rows are ``(3, heads, d)`` (q of every head, then k, then v)."""
    c = kernel.shape[0]
    d = kernel.shape[1] // (3 * num_heads)
    return kernel.reshape(c, num_heads, 3, d).transpose(0, 2, 1, 3).reshape(c, 3 * c).T


def _convert_layer(path: str, leaf: str, arr: np.ndarray, msa_heads: int = 0):
    """(our suffix, tensor) of one leaf inside a block (``path`` = module path in the block)."""
    if path.startswith('LayerNorm_'):
        norm = 'norm1' if path == 'LayerNorm_0' else 'norm2'
        return f'{norm}.' + ('weight' if leaf == 'scale' else 'bias'), _t(arr)
    if path.startswith('MlpBlock_0/Dense_'):
        fc = 'fc1' if path.endswith('_0') else 'fc2'
        return f'mlp.{fc}.' + ('weight' if leaf == 'kernel' else 'bias'), \
            _t(arr.T if leaf == 'kernel' else arr)
    if path == 'Conv_0':
        return 'skip.weight', _t(arr.transpose(3, 2, 0, 1))
    if path == 'FusedKQnA_0':
        names = {'query': 'query', 'Wk': 'key_weight', 'rpe_bias': 'rpe_bias'}
        if leaf == 'attn_scale_weights':
            return 'attn.attn_scale', _t(arr.reshape(arr.shape[-2], arr.shape[-1]))
        if leaf in names:
            return f'attn.{names[leaf]}', _t(arr)
    if path in ('FusedKQnA_0/to_v', 'FusedKQnA_0/to_out') and leaf == 'kernel':
        return f'attn.{path.split("/")[-1]}.weight', _t(arr.T)
    if path == 'MultiHeadSelfAttention_0/to_qkv' and leaf == 'kernel' and msa_heads:
        return 'attn.qkv.weight', _t(msa_qkv_kernel_to_weight(arr, msa_heads))
    if path == 'MultiHeadSelfAttention_0/to_out' and leaf == 'kernel':
        return 'attn.proj.weight', _t(arr.T)
    if path == 'MultiHeadSelfAttention_0/RelativePositionalEmbedding_0' and leaf == 'rpe_bias':
        return 'attn.rpe_bias', _t(arr)
    return None


def _msa_heads(block: Mapping) -> int:
    """MSA heads of a block, read off its relative-position table ``((2w-1)^2, heads)``; the
    qkv column order cannot be undone without it. 0 if the block has no such table."""
    try:
        table = block['MultiHeadSelfAttention_0']['RelativePositionalEmbedding_0']['rpe_bias']
    except (KeyError, TypeError):
        return 0
    return int(np.asarray(table).shape[-1])


def convert_qna(tree: Mapping, with_head: bool = True) -> Dict[str, torch.Tensor]:
    """Official params tree -> :class:`QnAViT` state dict (plus ``head.fc.*``).

    A leaf that fits no rule keeps its Flax path as key, so the strict check names it.
    """
    tree = params_tree(tree)
    _flatten(tree)  # every leaf an array of numbers, or a KeyError naming the entry
    out = OrderedDict()
    leftovers = {}
    stem = tree.get('StemBlock_0', {}).get('conv_1x1', {}).get('kernel')
    if stem is not None:
        out['stem.weight'] = _t(np.asarray(stem).transpose(3, 2, 0, 1))
    for s in range(4):
        blocks = []
        lsa, qna = tree.get(f'LSAStage_{s}', {}), tree.get(f'QnAStage_{s}', {})
        blocks += [(lsa[n], f'LSAStage_{s}/{n}') for n in _block_order(lsa)]
        blocks += [(qna[n], f'QnAStage_{s}/{n}') for n in _block_order(qna)]
        for j, (block, name) in enumerate(blocks):
            msa_heads = _msa_heads(block)
            for path, arr in _flatten(block).items():
                module, leaf = path.rsplit('/', 1)
                converted = _convert_layer(module, leaf, arr, msa_heads)
                if converted is None:
                    leftovers[f'{name}/{path}'] = _t(arr)
                else:
                    out[f'stages.{s}.{j}.{converted[0]}'] = converted[1]
    head = tree.get('ClassificationHead_0', {})
    if 'LayerNorm_0' in head:
        out['norm3.weight'] = _t(head['LayerNorm_0']['scale'])
        out['norm3.bias'] = _t(head['LayerNorm_0']['bias'])
    if with_head and 'head_logits' in head:
        out['head.fc.weight'] = _t(np.asarray(head['head_logits']['kernel']).T)
        out['head.fc.bias'] = _t(head['head_logits']['bias'])
    known = {'StemBlock_0', 'ClassificationHead_0'} | {f'{p}Stage_{s}' for p in ('LSA', 'QnA')
                                                       for s in range(4)}
    for name, sub in tree.items():
        if name not in known:
            leftovers.update({f'{name}/{k}': _t(v) for k, v in _flatten(
                sub if isinstance(sub, Mapping) else {'': sub}).items()})
    out.update(leftovers)
    return out


def load_official_qna(data: Any, with_head: bool = True) -> Dict[str, torch.Tensor]:
    """Convert a checkpoint given as file bytes, a path, or an already decoded dict."""
    from .flax_msgpack import read_flax_msgpack
    if isinstance(data, (str, bytes)) and not isinstance(data, Mapping):
        if isinstance(data, str):
            with open(data, 'rb') as f:
                data = f.read()
        data = read_flax_msgpack(data)
    return convert_qna(data, with_head=with_head)
