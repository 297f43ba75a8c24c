"""Make a mismatched torchvision importable (CPU-only machines).

The only torchvision wheel for torch 2.13 on PyPI is a CUDA build whose compiled ops do not load
against the CPU torch; ``import torchvision`` then dies with "operator torchvision::nms does not
exist". mmpretrain imports torchvision unconditionally, and mmengine's ``collect_env`` (run at every
Runner start) crashes on it. Declaring the two operator schemas that torchvision's Python code looks
up at import time makes the pure-Python parts (transforms, ``box_iou``) usable; its compiled ops stay
unavailable, which none of mmvit_ext's paths need.

Only applied when a plain import fails for exactly that reason; a working torchvision is untouched.
"""
import importlib.util
import sys
import warnings

_SCHEMAS = {
    'nms': 'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms': 'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
}
_library = None


def _purge():
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
        del sys.modules[name]


def ensure_importable() -> bool:
    """Return True when torchvision imports (possibly after declaring the missing schemas)."""
    global _library
    if importlib.util.find_spec('torchvision') is None:
        return False
    try:
        import torchvision  # noqa: F401
        return True
    except Exception as e:  # noqa: BLE001  (a broken torchvision must not break mmvit_ext)
        if 'torchvision::nms' not in str(e):
            warnings.warn(f'torchvision is installed but does not import ({e}); mmpretrain '
                          'models will not be available')
            _purge()
            return False
    import torch
    _purge()
    if _library is None:
        _library = torch.library.Library('torchvision', 'DEF')
        for schema in _SCHEMAS.values():
            _library.define(schema)
    import torchvision  # noqa: F401,F811
    return True
