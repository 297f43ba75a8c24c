"""Rewrite a checkpoint as plain data that loads with the restricted unpickler.

    python tools/misc/resave_checkpoint.py SRC DST [--trust-pickle]

Tensors, numpy data, numbers, strings, paths and containers are kept as they are; any other object
(a custom class in ``meta``, ...) becomes its text (``repr``), which is listed. Without
``--trust-pickle`` SRC is read with the restricted unpickler (so this only normalises a file that
already loads); with it, SRC is unpickled in full, which runs whatever code the file holds: use
it for files you trust only. DST is checked to load safely before the command ends.
"""
import argparse
import datetime
import os
import os.path as osp
import pathlib
import pickle
import sys
from collections import OrderedDict

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmvit_ext.checkpoints import (CorruptCheckpointError, UnsafeCheckpointError,  # noqa: E402
                                   check_readable, safe_torch_load)
from mmvit_ext.utils.atomic import atomic_write  # noqa: E402

PLAIN = (torch.Tensor, np.ndarray, np.generic, np.dtype, str, bytes, int, float, complex, bool,
         type(None), pathlib.PurePath, datetime.datetime, datetime.date, datetime.time,
         datetime.timedelta, argparse.Namespace)


class _Unresolved:
    """Stands in for a pickled object whose class cannot be imported here."""
    qualname = '?'

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f'<{self.qualname} (class not importable here) {getattr(self, "state", "")!r}>'


class _LenientUnpickler(pickle.Unpickler):
    """The full unpickler (``--trust-pickle``), but a class that cannot be imported becomes an
    :class:`_Unresolved` instead of an error."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Unresolved, ), dict(qualname=f'{module}.{name}'))


class _LenientPickle:
    Unpickler = _LenientUnpickler
    load = staticmethod(lambda f, **kw: _LenientUnpickler(f, **kw).load())
    __name__ = 'lenient_pickle'


def plain(obj, path='', replaced=None):
    """``obj`` with every non-plain object replaced by its repr (recorded in ``replaced``)."""
    if isinstance(obj, dict):  # dict, OrderedDict (kept), other dict subclasses -> dict
        kind = type(obj) if type(obj) in (dict, OrderedDict) else dict
        return kind((k, plain(v, f'{path}/{k}', replaced)) for k, v in obj.items())
    if type(obj) in (list, tuple):
        return type(obj)(plain(v, f'{path}/{i}', replaced) for i, v in enumerate(obj))
    if isinstance(obj, PLAIN) and type(obj).__module__ != '__main__':
        return obj
    kind = obj.qualname if isinstance(obj, _Unresolved) else \
        f'{type(obj).__module__}.{type(obj).__qualname__}'
    replaced.append(f'{path or "/"}: {kind}')
    if type(obj).__repr__ is object.__repr__ and hasattr(obj, '__dict__'):
        return f'<{kind} {vars(obj)!r}>'  # the default repr would keep only an address
    return repr(obj)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='unpickle SRC in full (runs code in it: trusted files only)')
    args = parser.parse_args()
    if not osp.isfile(args.src):
        sys.exit(f'error: {args.src} not found')
    try:
        if args.trust_pickle:
            check_readable(args.src)
            checkpoint = torch.load(args.src, map_location='cpu', weights_only=False,
                                    pickle_module=_LenientPickle)
        else:
            checkpoint = safe_torch_load(args.src, map_location='cpu')
    except (CorruptCheckpointError, UnsafeCheckpointError) as e:
        sys.exit(f'error: {e}')
    except Exception as e:  # the full unpickler fails in many ways on a bad file
        sys.exit(f'error: {args.src} could not be unpickled: {type(e).__name__}: {e}')
    replaced = []
    result = plain(checkpoint, '', replaced)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    with atomic_write(args.dst) as tmp:  # replaced only once it loads safely
        torch.save(result, tmp)
        try:
            safe_torch_load(tmp, map_location='cpu')
        except Exception as e:  # noqa: BLE001
            sys.exit(f'error: the rewritten file still does not load safely: {e}')
    for line in replaced:
        print(f'replaced by its text: {line}')
    print(f'wrote {args.dst} ({len(replaced)} object(s) replaced by text)')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
