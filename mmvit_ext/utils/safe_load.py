"""Safe checkpoint loading for mmengine on torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls ``torch.load``
without ``weights_only``: every Runner checkpoint then fails to load ("Unsupported global:
mmengine.logging.history_buffer.HistoryBuffer"), which breaks ``load_from``, ``--resume``,
``tools/test.py`` and ``mim test``. The common workaround (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``)
turns the protection off for everything.

Instead, :func:`safe_torch_load` keeps torch's restricted unpickler and allows, for the duration of
one load only, the few extra types a Runner checkpoint or an official release contains: mmengine's
``HistoryBuffer``, numpy arrays/scalars/dtypes and ``argparse.Namespace``. ``HistoryBuffer`` pickles
its statistics methods as ``getattr(HistoryBuffer, 'mean')``; plain ``getattr`` would let a pickle
reach arbitrary attributes, so it is replaced by :func:`_restricted_getattr`, which resolves only
those named methods. Anything else (e.g. ``os.system``) is refused.

:func:`install` registers this loader for local files in mmengine's ``CheckpointLoader``, the one
path used by ``load_checkpoint``, ``Runner.load_or_resume`` and ``init_cfg=Pretrained``.
"""
import argparse
import functools
import os.path as osp
import pickle
from typing import Any, List, Tuple

import torch

__all__ = ['safe_torch_load', 'install', 'UnsafeCheckpointError']


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds objects outside the allow-list (it could run code on load)."""


def _getattr_allow_list():
    """class -> attribute names a checkpoint may getattr (HistoryBuffer's statistics methods)."""
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:
        return {}
    return {HistoryBuffer: {'min', 'max', 'current', 'mean'}}


def _restricted_getattr(obj, name, *default):
    allowed = _getattr_allow_list().get(obj if isinstance(obj, type) else None, ())
    if name not in allowed:
        raise UnsafeCheckpointError(
            f'checkpoint asks for getattr({obj!r}, {name!r}), which is not '
            'on the allow-list of mmvit_ext.utils.safe_load')
    return getattr(obj, name, *default)


@functools.lru_cache(maxsize=None)
def _extra_safe_globals() -> Tuple[Any, ...]:
    import numpy as np
    safe: List[Any] = [argparse.Namespace, np.ndarray, np.dtype]
    # numpy >= 2 moved numpy.core to numpy._core; a checkpoint names whichever wrote it.
    for mod_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        for fn in ('_reconstruct', 'scalar'):
            safe.append((getattr(mod, fn), f'{mod_name}.{fn}'))
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [
            getattr(dtypes, n) for n in dir(dtypes)
            if isinstance(getattr(dtypes, n), type)
            and issubclass(getattr(dtypes, n), np.dtype)
        ]
    safe += list(_getattr_allow_list())  # HistoryBuffer
    safe.append((_restricted_getattr, 'builtins.getattr'))
    return tuple(safe)


def safe_torch_load(f, map_location=None) -> Any:
    """``torch.load`` with the restricted unpickler plus mmengine/numpy/argparse data types.

    Raises:
        UnsafeCheckpointError: the file pickles something outside the allow-list.
    """
    try:
        with torch.serialization.safe_globals(list(_extra_safe_globals())):
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if isinstance(e, UnsafeCheckpointError):
            raise
        name = f if isinstance(f, str) else getattr(f, 'name', '<buffer>')
        raise UnsafeCheckpointError(
            f'Refusing to load {name}: it contains Python objects outside the '
            'allow-list of mmvit_ext (tensors, containers, numpy data, mmengine '
            'HistoryBuffer, argparse.Namespace). Loading it with the full pickle '
            'could run arbitrary code. If you trust the file, re-save its tensors '
            'with a trusted tool (e.g. tools/model_converters/*2mmvit.py '
            f'--trust-pickle). Original error: {e}') from e


def _load_from_local(filename: str, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename} not found. Check the path in init_cfg/'
            'load_from/--resume; official weights must be downloaded by hand '
            '(see the backbone README in configs/).')
    return safe_torch_load(filename, map_location=map_location)


_installed = False


def install() -> None:
    """Route mmengine's local checkpoint loading through :func:`safe_torch_load` (idempotent)."""
    global _installed
    if _installed:
        return
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:  # mmengine missing: nothing to patch
        return
    CheckpointLoader.register_scheme(prefixes='', force=True)(_load_from_local)
    _installed = True
