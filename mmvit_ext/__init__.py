"""mmvit_ext: recent attention backbones for mmdetection, mmsegmentation and mmpretrain.

Importing the package registers every backbone in mmengine's root MODELS registry (visible from
mmdet, mmseg and mmpretrain), routes mmengine's checkpoint loading through a safe loader that works
with torch >= 2.6, makes mmengine's Runner refuse checkpoints that do not fit and stop on a
non-finite loss (``engine/runner_guards.py``), prints the project's refusals as one ``error:``
line (``utils/errors.py``), registers its models by name with the frameworks' lookups
(``model_index.py``), and makes a CPU-mismatched torchvision importable.
"""
from .utils import safe_load, torchvision_compat
from .version import __version__

safe_load.install()
torchvision_compat.ensure_importable()

from . import engine, models  # noqa: E402,F401  (registers backbones, optimizer constructor)
from . import model_index  # noqa: E402
from .engine import runner_guards  # noqa: E402
from .utils import errors  # noqa: E402

runner_guards.install()
errors.install_excepthook()
model_index.install()
from .models.backbones import *  # noqa: E402,F401,F403

__all__ = ['__version__']
