"""SG-Former significance maps over an image: where the self-guided blocks spend their key tokens.

Each hybrid-scale (H) block produces a map S; the next self-guided block sorts the tokens by S and
pools them, e.g. in stage 1, 196 of the least salient quarter into one key, 28 of the top quarter
into one key. Besides S itself, :func:`token_budget` turns that into "keys per token" (1/196,
1/56, 1/28 in stage 1), i.e. how finely each region is represented.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..attention.sg import merge_bounds

__all__ = ['collect_significance', 'token_budget', 'overlay', 'IMAGENET_MEAN', 'IMAGENET_STD']

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)


def token_budget(significance: torch.Tensor, groups: Sequence[Tuple[float, int]]) -> torch.Tensor:
    """Keys per token ``1 / k`` of the merge group each token falls in, ``(B, H, W)``."""
    B, H, W = significance.shape
    order = torch.sort(significance.reshape(B, -1), dim=-1)[1]
    budget = torch.empty(B, H * W, dtype=torch.float32, device=significance.device)
    for start, end, k in merge_bounds(H * W, groups):
        budget.scatter_(1, order[:, start:end], 1.0 / k)
    return budget.reshape(B, H, W)


@torch.no_grad()
def collect_significance(backbone, image_rgb: np.ndarray,
                         mean=IMAGENET_MEAN, std=IMAGENET_STD) -> List[Dict]:
    """Run ``backbone`` (an :class:`SGFormer`) on an ``(H, W, 3)`` uint8 RGB image.

    Returns one dict per H block: ``stage``, ``block``, ``significance`` and ``budget`` as
    ``(h, w)`` float arrays on the block's token grid.
    """
    x = torch.from_numpy(np.ascontiguousarray(image_rgb)).float().permute(2, 0, 1)[None]
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    param = next(backbone.parameters())
    backbone.eval()
    maps = []
    backbone(x.to(param.device, param.dtype), significance_maps=maps)
    results = []
    for stage, block, sig in maps:
        guided = backbone.stages[stage][block + 1].attn if block + 1 < len(
            backbone.stages[stage]) else None
        budget = token_budget(sig, guided.merge_groups) if guided is not None else None
        results.append(dict(stage=stage, block=block, significance=sig[0].float().cpu().numpy(),
                            budget=None if budget is None else budget[0].cpu().numpy()))
    return results


def overlay(image_rgb: np.ndarray, heat: np.ndarray, title: str = '', alpha: float = 0.5,
            log: bool = False) -> np.ndarray:
    """Blend a min-max normalised ``heat`` (any grid) over the image as a JET colour map.
    Returns an RGB uint8 image."""
    import cv2
    H, W = image_rgb.shape[:2]
    h = np.log(heat) if log else heat.astype(np.float64)
    h = (h - h.min()) / max(h.max() - h.min(), 1e-12)
    h = cv2.resize(h.astype(np.float32), (W, H), interpolation=cv2.INTER_NEAREST)
    colour = cv2.applyColorMap((h * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    out = (alpha * colour + (1 - alpha) * image_rgb).astype(np.uint8)
    if title:
        out = np.ascontiguousarray(out)
        cv2.putText(out, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out
