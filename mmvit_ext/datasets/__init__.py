from . import coco_checks  # noqa: F401  (registers CheckedCocoDataset with mmdet)
from .small import CLASSES, make_all, make_small_ade20k, make_small_coco, make_small_imagenet

__all__ = ['CLASSES', 'make_all', 'make_small_ade20k', 'make_small_coco', 'make_small_imagenet']
