"""mmvit_ext: recent attention backbones for mmdetection, mmsegmentation and mmpretrain.

Importing the package registers every backbone in mmengine's root MODELS registry (visible from
mmdet, mmseg and mmpretrain), routes mmengine's checkpoint loading through a safe loader that works
with torch >= 2.6, and makes a CPU-mismatched torchvision importable.
"""
from .utils import safe_load, torchvision_compat
from .version import __version__

safe_load.install()
torchvision_compat.ensure_importable()

from . import engine, models  # noqa: E402,F401  (registers backbones, optimizer constructor)
from .models.backbones import *  # noqa: E402,F401,F403

__all__ = ['__version__']
