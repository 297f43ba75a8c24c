"""mmvit_ext: recent attention backbones for mmdetection, mmsegmentation and mmpretrain.

With the OpenMMLab stack installed, importing the package adds registry entries and nothing
else: the backbones to mmengine's root ``MODELS`` (visible from mmdet, mmseg and mmpretrain);
the training components the project's configs select by type (``GuardedRunner``, the guarded
train loops, ``FiniteOptimWrapper``, ``SafeCheckpointHook``, ``CheckedCocoDataset``: see
:mod:`mmvit_ext.engine`); and the project's ImageNet models to mmpretrain's ``ModelHub`` (public
``register_model_index``). The one process-wide change is how checkpoints are unpickled
(:mod:`mmvit_ext.checkpoints.loader_schemes`): pickled code never runs, for every model alike.
A CUDA-built torchvision next to a CPU torch is made importable when, and only when, its import
fails for that reason.

Without mmengine, only :mod:`mmvit_ext.attention` (torch alone) is there to use.
"""
import importlib.util

from .version import __version__

__all__ = ['__version__']


def _openmmlab_installed() -> bool:
    try:
        return importlib.util.find_spec('mmengine') is not None
    except (ImportError, ValueError):
        return False


if _openmmlab_installed():
    from .utils.quiet import third_party_deprecations

    with third_party_deprecations():  # mmengine's and mmseg's `import pkg_resources` notices
        from .checkpoints import loader_schemes
        from .utils import torchvision_shim

        loader_schemes.install()
        torchvision_shim.ensure_importable()

        from . import models  # noqa: F401  (registry entries; first: the others use it)
        from .models.identify import refuse_nonfinite_checkpoints_of_ours

        # the frameworks' own entry points refuse NaN / Inf anywhere in our models' checkpoints
        loader_schemes.register_load_check(refuse_nonfinite_checkpoints_of_ours)
        from . import datasets, engine  # noqa: F401
        from .apis import model_index

        model_index.register_with_mmpretrain()
        from .models.backbones import *  # noqa: F401,F403
