"""Checkpoint loading in which pickled code never runs, on every supported torch (2.1 and newer).

Why: mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. On torch >= 2.6 that means
``weights_only=True``, and its own Runner checkpoints fail ("Unsupported global:
mmengine.logging.history_buffer.HistoryBuffer"); on older torch it means full unpickling, so a
checkpoint can run code. :func:`safe_torch_load` unpickles with the allow-list of
:mod:`.allow_list`; before unpickling, the file is checked to be what it claims
(:mod:`.file_check`). :mod:`.loader_schemes` makes mmengine's own loader do the same.
"""
import os
import pickle
import re
from typing import Any

import torch

from .allow_list import UnsafeCheckpointError, restricted_pickle
from .file_check import CorruptCheckpointError, check_readable

__all__ = ['safe_torch_load', 'UnsafeCheckpointError', 'CorruptCheckpointError', 'RESAVE_HINT']

RESAVE_HINT = ('If you trust the file, rewrite it as plain data with `python '
               'tools/misc/resave_checkpoint.py {name} SAFE.pth --trust-pickle` (tensors, numbers, '
               'strings and containers are kept; other objects become their text) and load '
               'SAFE.pth instead.')


_CORRUPT_HINTS = ('corrupt', 'EOF', 'PytorchStreamReader', 'central directory', 'truncated',
                  'invalid load key', 'Unsupported operand', 'could not find MARK', 'Ran out of input',
                  'magic number', 'invalid header')


def safe_torch_load(f, map_location=None, mmap: bool = False) -> Any:
    """``torch.load`` that refuses pickled code and names what a damaged file is. ``mmap``:
    map a zip checkpoint's tensors instead of reading them, and skip the whole-file CRC check
    (for reading its ``meta`` only).

    Raises:
        CorruptCheckpointError: the file is empty, truncated, damaged or not a torch file.
        UnsafeCheckpointError: the file pickles an object outside the allow-list (named).
    """
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, 'name', '<buffer>')
    if isinstance(f, (str, os.PathLike)) and not mmap:
        check_readable(name)
    try:
        return torch.load(f, map_location=map_location, weights_only=False,
                          pickle_module=restricted_pickle, **({'mmap': True} if mmap else {}))
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
