"""The self-guided half of SG-Former: tokens sorted by significance and merged into fewer
key/value tokens, finer where the significance is high.

A merge group whose size is not a multiple of its chunk length completes its last chunk with
zero tokens (they add nothing to the weighted sum). Forms of the merge: ``fast`` skips empty
groups and pads only what needs it, ``traceable`` always pads (no size test in a traced graph);
the reference loops over chunks (:mod:`.reference`). The significance order is a stable sort
(``fast``, also traceable): equal significance keeps the token order, so every backend picks the
same tokens; an exporter without a stable sort registers its own form of ``sg.order``.
"""
from fractions import Fraction
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..forms import dispatch, register
from ..shapes import ceil_div

__all__ = ['DEFAULT_MERGE_GROUPS', 'merge_bounds', 'num_merged_tokens', 'merge_sorted_tokens',
           'significance_order']

# Merge groups of the G block per stage, from the official code: (end of the group as a fraction
# of the ascending significance order, chunk length k). Stage 1: the least salient quarter is
# pooled 196 -> 1, the middle half 56 -> 1, the top quarter 28 -> 1.
DEFAULT_MERGE_GROUPS = (
    ((0.25, 196), (0.75, 56), (1.0, 28)),
    ((0.25, 49), (0.75, 14), (1.0, 7)),
    ((0.5, 2), (1.0, 1)),
)


def merge_bounds(num_tokens: int, groups: Sequence[Tuple[float, int]]
                 ) -> List[Tuple[int, int, int]]:
    """``(start, end, chunk)`` of each merge group for ``num_tokens`` sorted tokens.

    ``floor(N * fraction)`` in integers (the fraction as a ratio), which traced sizes keep."""
    bounds, start = [], 0
    for end_frac, chunk in groups:
        if end_frac >= 1:
            end = num_tokens
        else:
            ratio = Fraction(end_frac).limit_denominator(1000)
            end = num_tokens * ratio.numerator // ratio.denominator
        bounds.append((start, end, int(chunk)))
        start = end
    return bounds


def num_merged_tokens(num_tokens: int, groups: Sequence[Tuple[float, int]]) -> int:
    return sum(ceil_div(e - s, k) for s, e, k in merge_bounds(num_tokens, groups))


def merge_sorted_tokens(tokens: torch.Tensor, groups: Sequence[Tuple[float, int]],
                        merges: Sequence[nn.Linear]) -> torch.Tensor:
    """Pool sorted ``(B, N, C)`` tokens group by group, ``k`` consecutive tokens -> one.

    Each chunk becomes ``sum_i w_i x_i + b`` with the scalar weights of ``Linear(k, 1)`` shared by
    all channels. One batched op per group (there are 2-3 groups, never a loop over chunks).
    """
    return dispatch('sg.merge', tokens, groups, merges)


def _merge(tokens, groups, merges, static: bool):
    B, N, C = tokens.shape
    outs = []
    for (start, end, k), merge in zip(merge_bounds(N, groups), merges):
        n = end - start
        if not static and n == 0:
            continue
        m = ceil_div(n, k)
        seg = tokens[:, start:end]
        if static or m * k != n:  # complete the last chunk with zero tokens
            seg = F.pad(seg, (0, 0, 0, m * k - n))
        # (B, m, C, k) @ Linear(k, 1): the same op as the official pooling
        pooled = merge(seg.reshape(B, m, k, C).transpose(2, 3))
        outs.append(pooled.squeeze(-1))
    return torch.cat(outs, dim=1)


@register('sg.merge', 'fast')
def merge_sorted_tokens_fast(tokens, groups, merges):
    return _merge(tokens, groups, merges, static=False)


@register('sg.merge', 'traceable')
def merge_sorted_tokens_traceable(tokens, groups, merges):
    return _merge(tokens, groups, merges, static=True)


def significance_order(keys: torch.Tensor) -> torch.Tensor:
    """Indices that sort ``keys`` ascending along the last dim, ties in index order."""
    return dispatch('sg.order', keys)


@register('sg.order', ('fast', 'traceable'))
def stable_argsort(keys):
    # PyTorch's topk promises no order for ties; torch.export and compile keep this sort
    return torch.sort(keys, dim=-1, stable=True)[1]
