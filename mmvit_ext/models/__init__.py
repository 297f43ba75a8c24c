"""The backbones (registered in mmengine's root ``MODELS``), their building blocks, the
official-checkpoint converters, and what a state dict holds in words."""
from . import backbones, converters  # noqa: F401  (registers the backbones)
from .backbones import *  # noqa: F401,F403
