from . import attention, backbones, converters  # noqa: F401  (registers backbones)
from .backbones import *  # noqa: F401,F403
