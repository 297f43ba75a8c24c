"""Checkpoint loading in which pickled code never runs, on every supported torch (2.1 and newer).

Why: mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. On torch >= 2.6 that means
``weights_only=True``, and its own Runner checkpoints fail ("Unsupported global:
mmengine.logging.history_buffer.HistoryBuffer"); on older torch it means full unpickling, so a
checkpoint can run code. URLs (``https://``, ``torchvision://``, ``open-mmlab://``) go through
``torch.hub.load_state_dict_from_url``, which unpickles fully on every torch.

:func:`safe_torch_load` unpickles with an allow-list: what torch's own ``weights_only`` loader
allows, plus the few types a Runner checkpoint or an official release holds (mmengine's
``HistoryBuffer``, numpy arrays/scalars/dtypes, ``argparse.Namespace``, ``pathlib`` paths,
``datetime`` values). ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``; ``getattr`` is replaced by :func:`_restricted_getattr`, which
resolves only those. It works the same on torch 2.1 (no ``add_safe_globals``) and 2.13: the
allow-list is enforced by our own ``pickle.Unpickler`` given to ``torch.load`` as its pickle module.
Before unpickling, the file is checked to be what it claims (:mod:`.checkfile`).

:func:`install` (run by ``import mmvit_ext``) is the one process-wide change the package makes, and
it changes only how checkpoints are unpickled, for every model alike:

* torch >= 2.6: the extra types are added to torch's own allow-list
  (``torch.serialization.add_safe_globals``), so mmengine's unchanged local loader reads Runner
  checkpoints;
* torch < 2.6: the local loader is registered with mmengine's ``CheckpointLoader.register_scheme``:
  it behaves like mmengine's (same lookup, same ``FileNotFoundError``) but unpickles safely;
* every torch: the URL schemes are registered the same way: same download, cache
  (``torch.hub.get_dir()/checkpoints``) and rank-0-first order as mmengine, safe unpickling.
"""
import _compat_pickle
import argparse
import datetime
import functools
import logging
import os
import os.path as osp
import pathlib
import pickle
import re
import types
from typing import Any, Dict
from urllib.parse import urlparse

import torch

from .checkfile import CorruptCheckpointError, check_readable
from .torch_features import torch_version

__all__ = ['safe_torch_load', 'install', 'UnsafeCheckpointError', 'CorruptCheckpointError',
           'RESAVE_HINT', 'TORCH_HAS_ALLOW_LIST']

RESAVE_HINT = ('If you trust the file, rewrite it as plain data with `python '
               'tools/misc/resave_checkpoint.py {name} SAFE.pth --trust-pickle` (tensors, numbers, '
               'strings and containers are kept; other objects become their text) and load '
               'SAFE.pth instead.')


# ``add_safe_globals`` with ``(obj, 'module.name')`` pairs (needed for the restricted getattr)
# and the weights_only default are both torch 2.6.
TORCH_HAS_ALLOW_LIST = torch_version() >= (2, 6)


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
def _extra_safe_globals() -> Dict[str, Any]:
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
    allowed.update(_extra_safe_globals())
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

_CORRUPT_HINTS = ('corrupt', 'EOF', 'PytorchStreamReader', 'central directory', 'truncated',
                  'invalid load key', 'Unsupported operand', 'could not find MARK', 'Ran out of input',
                  'magic number', 'invalid header')


def safe_torch_load(f, map_location=None) -> Any:
    """``torch.load`` that refuses pickled code and names what a damaged file is.

    Raises:
        CorruptCheckpointError: the file is empty, truncated, damaged or not a torch file.
        UnsafeCheckpointError: the file pickles an object outside the allow-list (named).
    """
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, 'name', '<buffer>')
    if isinstance(f, (str, os.PathLike)):
        check_readable(name)
    try:
        return torch.load(f, map_location=map_location, weights_only=False,
                          pickle_module=restricted_pickle)
    except pickle.UnpicklingError as e:
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
        if 'magic number' in str(e) and isinstance(f, (str, os.PathLike)):
            raise CorruptCheckpointError(
                f'{name} is a pickle written by pickle.dump, not by torch.save: torch cannot '
                'read it as a checkpoint. In a Python you trust, load it with pickle and write '
                'the weights with torch.save(state_dict, "NEW.pth").') from e
        if any(h in str(e) for h in _CORRUPT_HINTS):
            raise CorruptCheckpointError(
                f'{name} is a damaged or truncated checkpoint ({_short_reason(e)}); download or '
                'copy it again') from e
        raise


def _short_reason(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if any(h in line for h in _CORRUPT_HINTS)]
    return (useful or lines or [type(e).__name__])[0][:160]


# ---------------------------------------------------------------- mmengine's loader schemes
def load_from_local(filename: str, map_location=None):
    """mmengine's ``load_from_local``, unpickling safely."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def _download_to_hub_cache(url: str, model_dir=None, progress=False) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` keeps ``url``: downloaded once."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return cached


def load_from_http(filename: str, map_location=None, model_dir=None, progress=False):
    """mmengine's ``load_from_http`` (local rank 0 downloads first), unpickling safely."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    checkpoint = None
    if rank == 0:
        checkpoint = safe_torch_load(_download_to_hub_cache(filename, model_dir, progress),
                                     map_location=map_location)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_torch_load(_download_to_hub_cache(filename, model_dir, progress),
                                         map_location=map_location)
    return checkpoint


def load_from_torchvision(filename: str, map_location=None):
    """``torchvision://NAME`` (and the deprecated ``modelzoo://``), as mmengine resolves it."""
    from mmengine.runner.checkpoint import get_torchvision_models
    name = filename.split('://', 1)[1]
    return load_from_http(get_torchvision_models()[name], map_location=map_location)


def load_from_openmmlab(filename: str, map_location=None):
    """``open-mmlab://NAME`` / ``openmmlab://NAME``, as mmengine resolves it."""
    from mmengine.logging import print_log
    from mmengine.runner.checkpoint import (_get_mmengine_home, get_deprecated_model_names,
                                            get_external_models)
    scheme, name = filename.split('://', 1)
    deprecated = get_deprecated_model_names()
    if name in deprecated:
        print_log(f'{scheme}://{name} is deprecated in favor of {scheme}://{deprecated[name]}',
                  logger='current', level=logging.WARNING)
        name = deprecated[name]
    url = get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location=map_location)
    return load_from_local(osp.join(_get_mmengine_home(), url), map_location=map_location)


def load_from_mmcls(filename: str, map_location=None):
    """``mmcls://NAME``, as mmengine resolves it."""
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    checkpoint = load_from_http(get_mmcls_models()[filename[8:]], map_location=map_location)
    return _process_mmcls_checkpoint(checkpoint)


_installed = False


def install() -> None:
    """Make every checkpoint mmengine loads unpickle safely (idempotent; see the module doc)."""
    global _installed
    if _installed:
        return
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:  # mmengine missing: only torch's allow-list
        CheckpointLoader = None
    if TORCH_HAS_ALLOW_LIST:
        torch.serialization.add_safe_globals(
            [obj if f'{getattr(obj, "__module__", "")}.{getattr(obj, "__qualname__", "")}' == name
             else (obj, name) for name, obj in _extra_safe_globals().items()])
    if CheckpointLoader is not None:
        if not TORCH_HAS_ALLOW_LIST:
            CheckpointLoader.register_scheme('', load_from_local, force=True)
        for prefixes, loader in ((('http://', 'https://'), load_from_http),
                                 (('modelzoo://', 'torchvision://'), load_from_torchvision),
                                 (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
                                 ('mmcls://', load_from_mmcls)):
            CheckpointLoader.register_scheme(prefixes, loader, force=True)
    _installed = True
