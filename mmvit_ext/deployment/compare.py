"""How an exported or compiled model is compared with eager PyTorch.

- Detectors: final detections, matched one to one (:func:`match_detections`): same label, box
  IoU >= 0.99, score within 1e-3, mask IoU >= 0.98 at the image size; an unmatched detection
  passes only at the score cut or as one half of an NMS near-tie swap. The verdict.
- Segmentors: the share of pixels with the same label (:func:`label_agreement`), >= 99.9%.
- Classifiers and backbones: the largest relative difference per output (within ``rtol``), with
  the near-tie rule for models that route tokens (:func:`self_drift`, :func:`near_tie`).

Raw output differences (:func:`max_relative_differences`) are also printed for every kind, as
a diagnostic.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .rewriter import exporting

__all__ = ['PERTURBATION', 'NEAR_TIE', 'as_tuple', 'as_numpy', 'max_relative_differences',
           'self_drift', 'near_tie', 'match_detections', 'label_agreement', 'BOX_IOU',
           'SCORE_GAP', 'MASK_IOU', 'LABEL_AGREEMENT']

PERTURBATION = 1e-5  # relative to the input's largest value: a few float roundings
PROBES = 4
NEAR_TIE = 1e-4  # PyTorch's own drift above this: the input sits at a routing near-tie


def as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs, )


def as_numpy(t):
    """A tensor (any device) or an onnxruntime array as a numpy array."""
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def max_relative_differences(got, ref) -> list:
    """Max relative difference per output, tensors or arrays (inf where the shapes differ: e.g.
    NMS kept another number of proposals)."""
    diffs = []
    for g, r in zip(got, ref):
        g, r = as_numpy(g), as_numpy(r)
        if g.shape != r.shape:
            diffs.append(float('inf'))
        elif r.size:
            diffs.append(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12)))
        else:
            diffs.append(0.)
    return diffs


def self_drift(module: nn.Module, x: torch.Tensor, ref) -> float:
    """How far ``module``'s own outputs (``ref`` at ``x``) move under rounding-size changes: the
    input moved by a few float roundings (:data:`PROBES` seeded perturbations of
    :data:`PERTURBATION`), and eager run with the plain forms that tracers and exporters see
    (``exporting('eager')``: the same values in another summation order). Above
    :data:`NEAR_TIE` the input sits at a routing near-tie (a sort, top-k, k-means or NMS decided
    by rounding), where any other runtime or summation order may decide differently. (The plain
    forms catch ties the input probes miss: two RPN anchors of a flat image region whose scores
    differ in the 7th digit moved together under every input probe, and swapped places in the
    exported program.) The plain forms count only for a module that routes (``Task.routes``):
    elsewhere a difference between the two forms is a bug, not a tie."""
    drift = 0.
    for seed in range(0 if module.task.routes(module) else 1, PROBES + 1):
        with torch.no_grad():
            if seed == 0:
                with exporting('eager'):
                    moved = as_tuple(module(x))
            else:
                noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
                moved = as_tuple(module(x + noise * PERTURBATION * float(x.abs().max())))
        drift = max(drift, max(max_relative_differences(moved, ref)))
    return drift


def near_tie(worst: float, drift: float) -> bool:
    """The deployment tools' one pass rule past the tolerance: the input sits at a routing
    near-tie (eager's own :func:`self_drift` above :data:`NEAR_TIE`) and the other runtime is no
    further than twice that drift from eager, i.e. it decided the tie no worse than a rounding
    change of the input does in eager itself."""
    return drift > NEAR_TIE and worst <= 2 * drift


# ----------------------------------------------------------------------------- detections
BOX_IOU = 0.99
SCORE_GAP = 1e-3
MASK_IOU = 0.98
LABEL_AGREEMENT = 0.999


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1y1x2y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 1.)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.


def _instances(result) -> Dict[str, np.ndarray]:
    """bboxes / scores / labels / masks of a DetDataSample, InstanceData or dict, as numpy."""
    inst = getattr(result, 'pred_instances', result)
    get = inst.get if isinstance(inst, dict) else lambda k, d=None: getattr(inst, k, d)
    out = {k: as_numpy(get(k)) for k in ('bboxes', 'scores', 'labels')}
    masks = get('masks', None)
    out['masks'] = None if masks is None else as_numpy(masks).astype(bool)
    return out


def match_detections(got, ref, score_thr: float, max_per_img: int,
                     nms_iou: Optional[float] = None) -> dict:
    """Pair ``got``'s detections (another runtime's) with ``ref``'s (mmdet's ``model.predict``),
    one to one, highest reference score first: same label, box IoU >= :data:`BOX_IOU`, scores
    within :data:`SCORE_GAP`, masks (at the image size) IoU >= :data:`MASK_IOU`.

    Two kinds of unmatched detection are forgiven; any other fails (``ok`` False):

    - ``at_cut``: its score is within :data:`SCORE_GAP` of a cut (the score threshold, or the
      lowest kept score when ``max_per_img`` detections were kept), so either side may keep it;
    - ``nms_swaps`` (only given ``nms_iou``, the per-class NMS IoU threshold): a missing and an
      extra detection of one label whose scores are within :data:`SCORE_GAP` and whose boxes
      overlap each other at least ``nms_iou`` (and below :data:`BOX_IOU`: at that overlap it is
      one detection whose score or mask moved too far, which fails). NMS keeps only one of two
      such boxes, and at a near-tie of their scores the summation order decides which: each
      runtime kept the other.
    """
    g, r = _instances(got), _instances(ref)
    ious = _box_iou(r['bboxes'].reshape(-1, 4), g['bboxes'].reshape(-1, 4))
    taken = np.zeros(len(g['scores']), dtype=bool)
    matched, worst_box, worst_mask, worst_score = [], 1., 1., 0.
    for i in np.argsort(-r['scores'], kind='stable'):
        fits = (~taken & (g['labels'] == r['labels'][i]) & (ious[i] >= BOX_IOU)
                & (np.abs(g['scores'] - r['scores'][i]) <= SCORE_GAP))
        best, best_mask = -1, -1.
        for j in np.flatnonzero(fits):
            m = 1. if g['masks'] is None or r['masks'] is None \
                else _mask_iou(g['masks'][j], r['masks'][i])
            if m >= MASK_IOU and (best < 0 or ious[i, j] > ious[i, best]):
                best, best_mask = j, m
        if best < 0:
            continue
        taken[best] = True
        matched.append((int(i), int(best)))
        worst_box = min(worst_box, float(ious[i, best]))
        worst_mask = min(worst_mask, best_mask)
        worst_score = max(worst_score, float(abs(g['scores'][best] - r['scores'][i])))
    missing = sorted(set(range(len(r['scores']))) - {i for i, _ in matched})
    extra = np.flatnonzero(~taken).tolist()

    def at_cut(scores, i):
        cut = score_thr
        if max_per_img > 0 and len(scores) >= max_per_img:
            cut = max(cut, float(scores.min()))
        return scores[i] <= cut + SCORE_GAP
    # unmatched and not at a cut: forgiven only as NMS swaps
    missing_off = [i for i in missing if not at_cut(r['scores'], i)]
    extra_off = [j for j in extra if not at_cut(g['scores'], j)]
    swapped = _nms_swaps(r, g, ious, missing_off, extra_off, nms_iou)
    failing_missing = [i for i in missing_off if i not in swapped]
    failing_extra = [j for j in extra_off if j not in swapped.values()]
    return dict(matched=len(matched), missing=len(missing), extra=len(extra),
                at_cut=len(missing) - len(missing_off) + len(extra) - len(extra_off),
                nms_swaps=len(swapped), ok=not failing_missing and not failing_extra,
                reference=len(r['scores']), worst_box_iou=worst_box,
                worst_mask_iou=worst_mask, worst_score_gap=worst_score,
                failing=[('missing', float(r['scores'][i]), int(r['labels'][i]))
                         for i in failing_missing]
                + [('extra', float(g['scores'][j]), int(g['labels'][j])) for j in failing_extra])


def _nms_swaps(r, g, ious, missing, extra, nms_iou) -> Dict[int, int]:
    """{missing reference index: extra index} of the NMS near-tie swaps (see
    :func:`match_detections`), paired one to one, highest reference score first, each with the
    extra box that overlaps it most."""
    pairs: Dict[int, int] = {}
    if nms_iou is None:
        return pairs
    free = list(extra)
    for i in sorted(missing, key=lambda i: -r['scores'][i]):
        fits = [j for j in free if g['labels'][j] == r['labels'][i]
                and abs(g['scores'][j] - r['scores'][i]) <= SCORE_GAP
                and nms_iou <= ious[i, j] < BOX_IOU]
        if fits:
            j = max(fits, key=lambda j: ious[i, j])
            pairs[i] = j
            free.remove(j)
    return pairs


def nearest_drift(got, ref) -> Tuple[float, float]:
    """(largest score change, smallest box IoU) between each reference detection and the
    other runtime's detection of its label that overlaps it most: how far results moved, where
    :func:`match_detections` only says which pairs fail. (0, 1) without detections."""
    g, r = _instances(got), _instances(ref)
    if not len(r['scores']) or not len(g['scores']):
        return 0., 1.
    ious = _box_iou(r['bboxes'].reshape(-1, 4), g['bboxes'].reshape(-1, 4))
    ious = np.where(r['labels'][:, None] == g['labels'][None], ious, -1.)
    nearest = ious.argmax(1)
    found = ious[np.arange(len(nearest)), nearest] >= 0
    if not found.any():
        return 0., 0.
    gaps = np.abs(r['scores'] - g['scores'][nearest])[found]
    return float(gaps.max()), float(ious[np.arange(len(nearest)), nearest][found].min())


def label_agreement(got, ref) -> float:
    """Share of pixels with the same label (1.0: identical maps; 0.0 where the sizes differ)."""
    g, r = as_numpy(got).squeeze(), as_numpy(ref).squeeze()
    return float((g == r).mean()) if g.shape == r.shape else 0.
