"""What a checkpoint may unpickle: torch's own ``weights_only`` allow-list, plus the few types a
Runner checkpoint or an official release holds (mmengine's ``HistoryBuffer``, numpy arrays /
scalars / dtypes, ``argparse.Namespace``, ``pathlib`` paths, ``datetime`` values).

``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``;
``getattr`` is replaced by :func:`_restricted_getattr`, which resolves only those. The allow-list
is enforced by our own ``pickle.Unpickler`` (:data:`restricted_pickle`, given to ``torch.load``
as its pickle module), so it is the same code on torch 2.1 (no ``add_safe_globals``) and 2.13.
"""
import _compat_pickle
import argparse
import datetime
import functools
import pathlib
import pickle
import re
import types
from typing import Any, Dict

import torch

from ..errors import Refusal

__all__ = ['UnsafeCheckpointError', 'restricted_pickle', 'extra_safe_globals']


class UnsafeCheckpointError(Refusal, pickle.UnpicklingError):
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
            'on the allow-list of mmvit_ext.checkpoints.allow_list')
    return getattr(obj, name, *default)


@functools.lru_cache(maxsize=None)
def extra_safe_globals() -> Dict[str, Any]:
    """'module.name' -> object, beyond torch's own weights_only allow-list."""
    import numpy as np
    safe: Dict[str, Any] = {}

    def add(obj, name=None):
        safe[name or f'{obj.__module__}.{obj.__qualname__}'] = obj

    for obj in (argparse.Namespace, np.ndarray, np.dtype, pathlib.Path, pathlib.PosixPath,
                pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath,
                pathlib.PureWindowsPath, datetime.datetime, datetime.date, datetime.time,
                datetime.timedelta, datetime.timezone):
        add(obj)
    # numpy >= 2 moved numpy.core to numpy._core; a checkpoint names whichever wrote it.
    for mod_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        for fn in ('_reconstruct', 'scalar'):
            add(getattr(mod, fn), f'{mod_name}.{fn}')
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        for n in dir(dtypes):
            obj = getattr(dtypes, n)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                add(obj, f'numpy.dtypes.{n}')
    # what newer torch's own allow-list has and torch 2.1's lacks: plain containers, and
    # _codecs.encode(text, 'latin1'), with which numpy 1.x pickles the bytes of its scalars and
    # arrays under protocol 2 (torch.save's); it only encodes a string
    import _codecs
    import collections
    add(_codecs.encode, '_codecs.encode')
    for obj in (collections.OrderedDict, collections.Counter, set, frozenset, bytearray, complex,
                slice, range):
        add(obj)
    add(torch.device, 'torch.device')
    for cls in _getattr_allow_list():  # HistoryBuffer
        add(cls)
        add(cls, 'mmengine.logging.history_buffer.HistoryBuffer')
    add(_restricted_getattr, 'builtins.getattr')
    return safe


@functools.lru_cache(maxsize=None)
def _allowed_globals() -> Dict[str, Any]:
    try:  # torch's own allow-list (tensors, storages, dtypes, OrderedDict, ...), read only
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed = dict(_get_allowed_globals())
    except Exception:  # noqa: BLE001  (a torch without it: the minimum a state dict needs)
        import collections
        allowed = {'collections.OrderedDict': collections.OrderedDict,
                   'torch._utils._rebuild_tensor_v2': torch._utils._rebuild_tensor_v2,
                   'torch._utils._rebuild_parameter': torch._utils._rebuild_parameter,
                   'torch.Size': torch.Size}
    allowed.update(extra_safe_globals())
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; anything else is refused, naming it."""

    def find_class(self, module, name):
        # protocol 2 (torch.save's default) writes Python 2 names (__builtin__.getattr); the
        # mapping tables hold only Python 2 names, so applying them always is what pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        obj = _allowed_globals().get(f'{module}.{name}')
        if obj is None and module.startswith('torch') and re.fullmatch(r'\w+', name):
            # dtypes and layouts (``torch.float32``) are plain attributes of torch
            candidate = getattr(torch, name, None) if module == 'torch' else None
            if isinstance(candidate, (torch.dtype, torch.layout, torch.memory_format)):
                obj = candidate
        if obj is None:
            raise UnsafeCheckpointError(f'unsupported GLOBAL {module}.{name}')
        return obj


def _restricted_load(file, **kwargs):
    return _RestrictedUnpickler(file, **kwargs).load()


# ``torch.load(pickle_module=...)`` takes any object with ``Unpickler`` and ``load``; torch then
# subclasses our Unpickler for storages, so the allow-list holds for both file formats.
restricted_pickle = types.ModuleType('mmvit_ext_restricted_pickle')
restricted_pickle.Unpickler = _RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError
