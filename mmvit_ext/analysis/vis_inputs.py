"""What the visualisation tools read: an image, and a backbone from a config or an arch name."""
import os.path as osp
from typing import Optional

import numpy as np

__all__ = ['load_image_rgb', 'build_vis_backbone']


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
    from mmvit_ext.registry import MODELS
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
        print('no --checkpoint: random weights (the pictures show the mechanics, not a trained '
              'model)')
    backbone.init_weights()
    return backbone
