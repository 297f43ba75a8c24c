"""Reading an image for the visualisation tools."""
import os.path as osp

import numpy as np

__all__ = ['load_image_rgb']


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
