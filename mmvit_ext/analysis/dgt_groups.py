"""DG-Attention's query groups and selected keys over an image.

Every DG-Attention block clusters the queries of each head into groups (k-means) and lets each
group attend to its top-k keys. :func:`collect_routing` runs a :class:`DGT` backbone on an image
and returns, for a chosen block and head, the group of every token and the keys of every group on
the block's token grid; :func:`draw_groups` and :func:`draw_group_keys` paint them.
"""
from typing import Dict

import numpy as np
import torch

from .significance import IMAGENET_MEAN, IMAGENET_STD

__all__ = ['collect_routing', 'draw_groups', 'draw_group_keys', 'group_colours']


@torch.no_grad()
def collect_routing(backbone, image_rgb: np.ndarray, stage: int, block: int, head: int = 0,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Dict:
    """Run ``backbone`` on an ``(H, W, 3)`` uint8 RGB image; return ``groups`` (h, w) int array,
    ``keys`` (G, k) token indices, ``grid`` (h, w) of block ``block`` of stage ``stage``."""
    if not 0 <= stage < len(backbone.stages):
        raise ValueError(f'stage must be in [0, {len(backbone.stages) - 1}], got {stage}')
    if not 0 <= block < len(backbone.stages[stage]):
        raise ValueError(f'stage {stage} has {len(backbone.stages[stage])} blocks, got block '
                         f'{block}')
    attn = backbone.stages[stage][block].attn
    if not 0 <= head < attn.num_heads:
        raise ValueError(f'that block has {attn.num_heads} heads, got head {head}')
    grid = {}

    def record_grid(module, args):  # NHWC input of the block
        grid['hw'] = tuple(args[0].shape[1:3])

    hook = backbone.stages[stage][block].register_forward_pre_hook(record_grid)
    keep, attn.keep_routing = attn.keep_routing, True
    try:
        x = torch.from_numpy(np.ascontiguousarray(image_rgb)).float().permute(2, 0, 1)[None]
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        param = next(backbone.parameters())
        backbone.eval()
        backbone(x.to(param.device, param.dtype))
    finally:
        hook.remove()
        attn.keep_routing = keep
    routing = attn.last_routing
    h, w = grid['hw']
    return dict(groups=routing.assign[head].cpu().numpy().reshape(h, w),
                keys=routing.key_index[head].cpu().numpy(), grid=(h, w))


def group_colours(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (evenly spaced hues)."""
    import cv2
    hsv = np.stack([np.arange(n) * 180 // max(n, 1), np.full(n, 220), np.full(n, 255)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def _title(img, text):
    import cv2
    img = np.ascontiguousarray(img)
    cv2.putText(img, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)
    return img


def draw_groups(image_rgb: np.ndarray, groups: np.ndarray, title: str = '',
                alpha: float = 0.55) -> np.ndarray:
    """Each token's cell in its group's colour, blended over the image (RGB uint8)."""
    import cv2
    H, W = image_rgb.shape[:2]
    colours = group_colours(int(groups.max()) + 1)
    cells = cv2.resize(groups.astype(np.int32).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_NEAREST).astype(np.int64)
    out = (alpha * colours[cells] + (1 - alpha) * image_rgb).astype(np.uint8)
    return _title(out, title) if title else out


def draw_group_keys(image_rgb: np.ndarray, groups: np.ndarray, keys: np.ndarray, group: int,
                    title: str = '') -> np.ndarray:
    """The image darkened, the group's queries tinted in its colour, its selected keys bright
    white cells (a key that is also a query of the group: both)."""
    import cv2
    H, W = image_rgb.shape[:2]
    h, w = groups.shape
    colour = group_colours(int(groups.max()) + 1)[group]
    key_map = np.zeros(h * w, np.float32)
    key_map[keys[group]] = 1
    up = lambda a: cv2.resize(a.astype(np.float32), (W, H),  # noqa: E731
                              interpolation=cv2.INTER_NEAREST)[..., None]
    query = up(groups == group)
    key = up(key_map.reshape(h, w))
    out = 0.35 * image_rgb
    out = out * (1 - 0.6 * query) + 0.6 * query * colour
    out = out * (1 - 0.8 * key) + 0.8 * key * 255
    out = out.clip(0, 255).astype(np.uint8)
    return _title(out, title) if title else out


def group_legend(image_rgb: np.ndarray, num_groups: int, width: int = 64) -> np.ndarray:
    """The picture with a legend at its right: one swatch per query group, with its number."""
    import cv2
    h = image_rgb.shape[0]
    panel = np.full((h, width, 3), 255, np.uint8)
    colours = group_colours(num_groups)
    row = max(8, min(16, (h - 4) // max(num_groups, 1)))
    for g in range(min(num_groups, (h - 4) // row)):
        y = 2 + g * row
        panel[y:y + row - 2, 4:16] = colours[g]
        cv2.putText(panel, f'group {g}', (20, y + row - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([image_rgb, panel], axis=1)
