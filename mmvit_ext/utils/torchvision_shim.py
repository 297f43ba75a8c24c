"""Make a CUDA-built torchvision importable next to a CPU-only torch.

The only torchvision wheel for torch 2.13 on PyPI is a CUDA build whose compiled ops do not load
against the CPU torch; ``import torchvision`` then dies with "operator torchvision::nms does not
exist". mmpretrain imports torchvision unconditionally, and mmengine's ``collect_env`` (run at
every Runner start) crashes on it. Declaring the two operator schemas that torchvision's Python
code looks up at import time makes the pure-Python parts (transforms, ``box_iou``) importable;
its compiled ops stay unavailable, which none of mmvit_ext's paths need. A working torchvision
is left untouched.

Used two ways, from this one file:

* ``import mmvit_ext`` calls :func:`ensure_importable`;
* ``tools/setup_env.sh`` copies this file into the environment's site-packages as
  ``_mmvit_torchvision_hook.py`` with a ``.pth`` line that imports it at interpreter start; under
  that name it installs a finder (:func:`install_hook`) that prepares torchvision when it is
  first imported, so the frameworks' own tools work without importing mmvit_ext. It imports
  nothing of mmvit_ext on purpose, and is cheap at start-up.
"""
import glob
import importlib.abc
import importlib.util
import os.path as osp
import sys
import warnings

__all__ = ['ensure_importable', 'install_hook', 'declare_missing_ops']

_SCHEMAS = ('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
            'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
_library = None


def declare_missing_ops() -> None:
    """Declare torchvision's operator schemas unless its compiled ops load (or were declared)."""
    global _library
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.origin:
        return
    import torch
    for lib in glob.glob(osp.join(osp.dirname(spec.origin), '_C*.so')):
        try:
            torch.ops.load_library(lib)
            return  # the compiled ops load: nothing to do
        except (OSError, RuntimeError):
            break
    try:
        torch.ops.torchvision.nms  # noqa: B018 (declared already)
        return
    except (AttributeError, RuntimeError):
        pass
    _library = torch.library.Library('torchvision', 'DEF')
    for schema in _SCHEMAS:
        _library.define(schema)


def _purge():
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
        del sys.modules[name]


def ensure_importable() -> bool:
    """Return True when torchvision imports (possibly after declaring the missing schemas)."""
    if importlib.util.find_spec('torchvision') is None:
        return False
    try:
        import torchvision  # noqa: F401
        return True
    except Exception as e:  # noqa: BLE001  (a broken torchvision must not break mmvit_ext)
        _purge()
        if 'torchvision::nms' not in str(e):
            warnings.warn(f'torchvision is installed but does not import ({e}); mmpretrain '
                          'models will not be available')
            return False
    declare_missing_ops()
    import torchvision  # noqa: F401,F811
    return True


class _TorchvisionFinder(importlib.abc.MetaPathFinder):

    def find_spec(self, name, path=None, target=None):
        if name == 'torchvision':
            sys.meta_path.remove(self)
            try:
                declare_missing_ops()
            except Exception:  # noqa: BLE001  (never break an import because of this hook)
                pass
        return None  # the regular finders import it


def install_hook() -> None:
    """Prepare torchvision when it is first imported (the site-packages hook)."""
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())


if __name__ == '_mmvit_torchvision_hook':  # imported by the .pth line of tools/setup_env.sh
    install_hook()
