"""Import hook that makes a CUDA-built torchvision importable next to a CPU-only torch.

``tools/setup_env.sh`` copies this file into the environment's site-packages as
``_mmvit_torchvision_hook.py`` with a ``.pth`` line that imports it at interpreter start, so that
the frameworks' own tools (``import torchvision``, ``import mmdet.models``, ``mim run mmdet ...``)
work without importing mmvit_ext first. It is standalone on purpose (no mmvit_ext import) and
cheap at start-up: it only registers a finder; nothing happens until ``torchvision`` is imported.

When that happens, it tries to load torchvision's compiled ops; if the library cannot load (the
CUDA build on a CPU-only torch), it declares the two operator schemas torchvision's Python code
looks up at import time (``nms``, ``qnms``), so the pure-Python parts import; the compiled ops
stay unavailable. A working torchvision is left untouched.
"""
import glob
import importlib.abc
import importlib.util
import os.path as osp
import sys

_SCHEMAS = ('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
            'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
_library = None


def _prepare() -> None:
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
        torch.ops.torchvision.nms  # noqa: B018 (declared already, e.g. by mmvit_ext)
        return
    except (AttributeError, RuntimeError):
        pass
    _library = torch.library.Library('torchvision', 'DEF')
    for schema in _SCHEMAS:
        _library.define(schema)


class _TorchvisionFinder(importlib.abc.MetaPathFinder):

    def find_spec(self, name, path=None, target=None):
        if name == 'torchvision':
            sys.meta_path.remove(self)
            try:
                _prepare()
            except Exception:  # never break an import because of this hook
                pass
        return None  # the regular finders import it


def install() -> None:
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())


install()
