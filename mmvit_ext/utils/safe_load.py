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
those named methods. Harmless standard types that frameworks put in ``meta`` (``pathlib`` paths,
``datetime`` values) load too. Anything else (e.g. ``os.system``) is refused, naming the type,
with a way out for a trusted file (``tools/misc/resave_checkpoint.py --trust-pickle``).

Before unpickling, the file is checked to be what it claims (:mod:`.checkfile`): an empty,
truncated, damaged or text file is a :class:`CorruptCheckpointError`, not an "unsafe pickle".

:func:`install` registers this loader for local files in mmengine's ``CheckpointLoader``, the one
path used by ``load_checkpoint``, ``Runner.load_or_resume`` and ``init_cfg=Pretrained``.
"""
import argparse
import datetime
import functools
import os
import os.path as osp
import pathlib
import pickle
import re
from typing import Any, List, Tuple

import torch

from .checkfile import CorruptCheckpointError, check_readable

__all__ = ['safe_torch_load', 'install', 'UnsafeCheckpointError', 'CorruptCheckpointError',
           'RESAVE_HINT']

RESAVE_HINT = ('If you trust the file, rewrite it as plain data with `python '
               'tools/misc/resave_checkpoint.py {name} SAFE.pth --trust-pickle` (tensors, numbers, '
               'strings and containers are kept; other objects become their text) and load '
               'SAFE.pth instead.')


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
    # harmless standard types frameworks write into meta (work_dir paths, timestamps)
    safe += [pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath,
             pathlib.PurePosixPath, pathlib.PureWindowsPath, datetime.datetime, datetime.date,
             datetime.time, datetime.timedelta, datetime.timezone]
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


_CORRUPT_HINTS = ('corrupt', 'EOF', 'PytorchStreamReader', 'central directory', 'truncated',
                  'invalid load key', 'Unsupported operand', 'could not find MARK', 'Ran out of input',
                  'magic number', 'invalid header')


def safe_torch_load(f, map_location=None) -> Any:
    """``torch.load`` with the restricted unpickler plus mmengine/numpy/argparse/pathlib data.

    Raises:
        CorruptCheckpointError: the file is empty, truncated, damaged or not a torch file.
        UnsafeCheckpointError: the file pickles an object outside the allow-list (named).
    """
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, 'name', '<buffer>')
    if isinstance(f, (str, os.PathLike)):
        check_readable(name)
    try:
        with torch.serialization.safe_globals(list(_extra_safe_globals())):
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if isinstance(e, UnsafeCheckpointError):
            raise
        found = re.search(r'GLOBAL ([\w.]+)', str(e)) or re.search(
            r'checkpoint asks for (getattr\([^)]*\))', str(e))
        if found is None:
            raise CorruptCheckpointError(
                f'{name} is not a readable checkpoint: its pickle data is damaged '
                f'({_short_reason(e)}); download or copy it again') from e
        raise UnsafeCheckpointError(
            f'Refusing to load {name}: it pickles {found.group(1)}, an object outside the '
            'allow-list of mmvit_ext (tensors, containers, numpy data, mmengine HistoryBuffer, '
            'argparse.Namespace, pathlib paths, datetime values); unpickling it could run code '
            'from the file. ' + RESAVE_HINT.format(name=name)) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        if any(h in str(e) for h in _CORRUPT_HINTS):
            raise CorruptCheckpointError(
                f'{name} is a damaged or truncated checkpoint ({_short_reason(e)}); download or '
                'copy it again') from e
        raise


def _short_reason(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if any(h in line for h in _CORRUPT_HINTS)]
    return (useful or lines or [type(e).__name__])[0][:160]


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
