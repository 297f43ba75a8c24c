"""The attention ablation set: variants of :class:`AttentionPyramid` sized to one FLOP budget.

A variant names the attention of each stage (and the heads it needs); :func:`size_to_budget`
chooses its width and stage-3 depth so that the backbone's FLOPs (MACs, the project's counter)
at a stated input size are within ``tol`` of the budget. FLOPs are a quadratic in the width
(C, 2C, 4C, 8C) for a fixed depth and linear in the depth, so six counts fit the surface (once over
the whole range, once more around the width that meets the budget); the chosen size is then
counted again, and only a size whose real count is within ``tol`` is
returned. Width first: the default depth (Swin-T's 2-2-6-2) if a width gets within the
tolerance there, else the nearest stage-3 depth where one does.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['VARIANTS', 'variant_names', 'variant_arch', 'size_to_budget', 'backbone_flops',
           'SWIN_T_GFLOPS']

SWIN_T_GFLOPS = 4.5  # Swin-T at 224x224 as its paper states it; the default budget

_HEADS = (3, 6, 12, 24)  # Swin-T's; MSDA needs a multiple of its three dilations
_SG_HEADS = (2, 4, 8, 16)  # SG-Former's: its hybrid block splits the heads in two halves
_DEPTHS = (2, 2, 6, 2)


def _variant(stage_attentions, heads=_HEADS):
    return dict(attentions=tuple(stage_attentions), num_heads=heads)


#: the T-size set: each attention in stages 1-2 with global attention in 3-4 (``-s12``), and
#: each attention in every stage where it is defined at every resolution (``-all``; SG-Former's
#: pair is defined for stages 1-3, stage 4 stays global as in SG-Former)
VARIANTS: Dict[str, Dict] = {
    **{f'{a}-s12': _variant((a, a, 'global', 'global'), _SG_HEADS if a == 'sg' else _HEADS)
       for a in ('msda', 'qna', 'dg', 'sg', 'swin', 'none')},
    'global-all': _variant(('global', ) * 4),
    **{f'{a}-all': _variant((a, ) * 4) for a in ('msda', 'qna', 'dg', 'swin', 'none')},
    'sg-all': _variant(('sg', 'sg', 'sg', 'global'), _SG_HEADS),
}


def variant_arch(variant, width: int, stage3_depth: int = _DEPTHS[2]) -> Dict:
    """The ``AttentionPyramid`` arch dict of a variant (a name of :data:`VARIANTS` or a dict with
    ``attentions``, ``num_heads`` and optionally ``attn_cfgs``) at ``width`` (stage-1 channels)."""
    spec = _spec(variant)
    arch = dict(embed_dims=int(width), depths=(2, 2, int(stage3_depth), 2),
                num_heads=tuple(spec['num_heads']), attentions=tuple(spec['attentions']))
    if spec.get('attn_cfgs'):
        arch['attn_cfgs'] = tuple(spec['attn_cfgs'])
    return arch


def variant_names(names: Optional[Sequence[str]] = None) -> List[str]:
    """``names`` (default: every variant of :data:`VARIANTS`), each checked to be one."""
    names = list(names or VARIANTS)
    for name in names:
        _spec(name)
    return names


def _spec(variant) -> Dict:
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(f'unknown ablation variant {variant!r}; choose from '
                             f'{sorted(VARIANTS)} or give a dict with attentions and num_heads')
        return VARIANTS[variant]
    return dict(variant)


def backbone_flops(arch: Dict, shape: Tuple[int, int] = (224, 224)) -> Dict:
    """FLOPs (MACs) and params of ``AttentionPyramid(arch)`` at ``shape`` (H, W)."""
    import torch

    from ..models.backbones.attention_pyramid import AttentionPyramid
    from .complexity import count_flops
    torch.manual_seed(0)  # DG-Attention's k-means sees the same input every time
    model = AttentionPyramid(arch=arch, drop_path_rate=0.)
    result = count_flops(model, input_shape=(3, *shape))
    return dict(flops=result['flops'], params=result['params'])


def _quadratic(xs: Sequence[float], ys: Sequence[float]) -> Callable[[float], float]:
    coeffs = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 2)
    return lambda x: float(np.polyval(coeffs, x))


def size_to_budget(variant, budget_gflops: float = SWIN_T_GFLOPS,
                   shape: Tuple[int, int] = (224, 224), tol: float = 0.02,
                   widths: Tuple[int, int] = (12, 768), depths: Tuple[int, int] = (1, 24),
                   count: Optional[Callable[[Dict], int]] = None) -> Dict:
    """Width and stage-3 depth of ``variant`` whose FLOPs at ``shape`` are within ``tol`` of
    ``budget_gflops`` (GMACs).

    Returns ``dict(arch, flops, params, error, counts)`` (``error``: flops / budget - 1,
    ``counts``: how many models were counted). Raises ``ValueError`` when the budget is outside
    what ``widths`` x ``depths`` can reach, or when no size there comes within ``tol``.
    ``count(arch) -> dict(flops, params)`` replaces the FLOP counter (tests).
    """
    if budget_gflops <= 0:
        raise ValueError(f'the FLOP budget must be > 0 GFLOPs, got {budget_gflops}')
    spec = _spec(variant)
    name = variant if isinstance(variant, str) else 'custom'
    heads = tuple(spec['num_heads'])
    step = heads[0] * (2 if 'sg' in spec['attentions'] and heads[0] % 2 else 1)
    counter = count or (lambda arch: backbone_flops(arch, shape))
    cache: Dict[Tuple[int, int], Dict] = {}

    def counted(width, depth):
        if (width, depth) not in cache:
            cache[(width, depth)] = counter(variant_arch(spec, width, depth))
        return cache[(width, depth)]

    d0 = _DEPTHS[2]
    per_depth = []

    def fit(probe):
        per_depth[:] = [_quadratic(probe, [counted(w, d)['flops'] for w in probe])
                        for d in (d0, d0 + 1)]

    def predict(width, depth):
        base, next_ = per_depth[0](width), per_depth[1](width)
        return base + (depth - d0) * (next_ - base)

    budget = budget_gflops * 1e9
    lo_w = max(step, step * math.ceil(widths[0] / step))
    hi_w = step * (widths[1] // step)
    fit(sorted({max(step, step * round(w / step)) for w in (48, 96, 160)}))  # the whole range
    lowest, highest = predict(lo_w, depths[0]), predict(hi_w, depths[1])
    where = (f'{name} at {shape[0]}x{shape[1]} spans about {lowest / 1e9:.3g}..'
             f'{highest / 1e9:.3g} GFLOPs over widths {lo_w}..{hi_w} and stage-3 depths '
             f'{depths[0]}..{depths[1]}')
    if not lowest * (1 - tol) <= budget <= highest * (1 + tol):
        raise ValueError(f'a budget of {budget_gflops:g} GFLOPs is out of reach: {where}; '
                         'choose a budget inside that range (or widen widths/depths)')
    # refit around the width that meets the budget at the default depth: integer channel
    # splits (the stem's C/2) make the far fit a few percent off at small widths
    near = min(range(lo_w, hi_w + 1, step), key=lambda w: abs(predict(w, d0) - budget))
    if hi_w - lo_w >= 4 * step:  # three distinct widths inside the range
        near = min(max(near, lo_w + 2 * step), hi_w - 2 * step)
        fit([near - 2 * step, near, near + 2 * step])
    candidates: List[Tuple] = []
    for depth in range(depths[0], depths[1] + 1):
        for width in range(lo_w, hi_w + 1, step):
            error = predict(width, depth) / budget - 1
            if abs(error) <= 0.9 * tol:  # a margin for what the fit does not see
                candidates.append((abs(depth - d0), abs(error), width, depth))
    for *_, width, depth in sorted(candidates)[:6]:
        result = counted(width, depth)
        error = result['flops'] / budget - 1
        if abs(error) <= tol:
            return dict(arch=variant_arch(spec, width, depth), flops=result['flops'],
                        params=result['params'], error=error, counts=len(cache))
    raise ValueError(f'no width and stage-3 depth of {name} comes within {tol:.0%} of '
                     f'{budget_gflops:g} GFLOPs ({where}); loosen tol or change the budget')
