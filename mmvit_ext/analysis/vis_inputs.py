"""What the visualisation tools read: an image, and a backbone from a config or an arch name."""
import os.path as osp
from typing import Optional

import numpy as np

__all__ = ['load_image_rgb', 'build_vis_backbone', 'mark_random_weights', 'with_colour_bar',
           'fit_within', 'RANDOM_WEIGHTS_NOTE']


def load_image_rgb(path: str, short_side: int = 0) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, resized so that its short side is ``short_side`` (0: as is).
    Raises ``ValueError`` naming the problem if the file is missing or not an image."""
    import cv2
    if not osp.isfile(path):
        raise ValueError(f'image {path} not found')
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path} is not an image OpenCV can read')
    if short_side:
        scale = short_side / min(bgr.shape[:2])
        bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


def build_vis_backbone(type_name: str, config: Optional[str], arch, checkpoint: Optional[str]):
    """A ``type_name`` backbone with only its last output: from ``config``'s model (or
    model.backbone), else from ``arch``; weights from ``checkpoint`` (any form the backbone's
    ``init_cfg`` accepts) or random. Raises ``ValueError`` if the config holds another backbone."""
    from mmvit_ext.models.registry import MODELS
    if config:
        from mmengine.config import Config
        cfg = Config.fromfile(config).model
        bb_cfg = cfg.get('backbone', cfg)
        if bb_cfg.get('type') not in (type_name, f'mmvit_ext.{type_name}'):
            raise ValueError(f'the backbone of {config} is {bb_cfg.get("type")!r}, '
                             f'not {type_name}')
        bb_cfg = dict(bb_cfg, init_cfg=None, out_indices=(3, ))
    else:
        bb_cfg = dict(type=type_name, arch=arch, out_indices=(3, ))
    backbone = MODELS.build(bb_cfg)
    if checkpoint:
        backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    else:
        print(f'warning: {RANDOM_WEIGHTS_NOTE} (the pictures show the mechanics only; pass '
              f'--checkpoint for a trained model)')
    backbone.init_weights()
    return backbone


# ----------------------------------------------------------------------------- honest pictures
RANDOM_WEIGHTS_NOTE = 'RANDOM WEIGHTS: no checkpoint given, nothing learned is shown'


def mark_random_weights(image_rgb: np.ndarray) -> np.ndarray:
    """The picture with a red banner saying the weights are random (a map of an untrained
    model shows the mechanics only; its patterns are not saliency)."""
    import cv2
    out = np.ascontiguousarray(image_rgb.copy())
    h, w = out.shape[:2]
    band = max(18, h // 14)
    out[h - band:] = (out[h - band:] * 0.3 + np.array([200, 0, 0]) * 0.7).astype(np.uint8)
    scale = max(0.35, min(0.6, w / 900))
    cv2.putText(out, RANDOM_WEIGHTS_NOTE, (4, h - band // 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return out


def with_colour_bar(image_rgb: np.ndarray, low: str, high: str, colormap=None,
                    width: int = 64) -> np.ndarray:
    """The picture with a vertical colour bar at its right: ``high`` at the top, ``low`` at the
    bottom (the map's real values, so that a flat map reads as flat)."""
    import cv2
    colormap = cv2.COLORMAP_JET if colormap is None else colormap
    h = image_rgb.shape[0]
    ramp = np.linspace(255, 0, h).astype(np.uint8)[:, None].repeat(14, 1)
    bar = cv2.applyColorMap(ramp, colormap)[..., ::-1]
    panel = np.full((h, width, 3), 255, np.uint8)
    panel[:, 4:18] = bar
    for text, y in ((high, 12), (low, h - 4)):
        cv2.putText(panel, text, (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([image_rgb, panel], axis=1)


def fit_within(image_rgb: np.ndarray, max_width: int = 1600,
               max_height: int = 2400) -> np.ndarray:
    """Shrunk (never enlarged) to fit ``max_width`` x ``max_height``, aspect kept."""
    import cv2
    h, w = image_rgb.shape[:2]
    scale = min(1., max_width / w, max_height / h)
    if scale == 1.:
        return image_rgb
    return cv2.resize(image_rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)
