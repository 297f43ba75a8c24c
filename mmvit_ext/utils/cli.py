"""How the project's tools end: on a refusal (:class:`mmvit_ext.errors.Refusal`), one
``error: ...`` line and exit status 1.

The entry points (``tools/train.py``, ``tools/test.py``, the converters, the deployment tools,
and so ``mim train mmvit_ext`` and ``dist_train.sh``) run their ``main`` under
:func:`one_line_refusals`; nothing is installed process-wide (``sys.excepthook`` is left
alone), so any other program keeps Python's behaviour. Every other exception keeps its full
traceback. ``MMVIT_TRACEBACK=1`` shows the traceback for refusals too.
"""
import contextlib
import functools
import os
import sys

from ..errors import refusal_message
from .quiet import third_party_deprecations

__all__ = ['one_line_refusals', 'refuses_in_one_line']


@contextlib.contextmanager
def one_line_refusals():
    """Turn a refusal raised inside the block into ``error: MESSAGE`` and exit status 1 (and
    keep third-party ``pkg_resources`` notices of lazily imported modules out of the output)."""
    try:
        with third_party_deprecations():
            yield
    except Exception as e:  # noqa: BLE001  (only refusals are turned into one line)
        message = refusal_message(e)
        if message is None or os.environ.get('MMVIT_TRACEBACK'):
            raise
        sys.stderr.write(f'error: {message}\n(set MMVIT_TRACEBACK=1 for the traceback)\n')
        sys.stderr.flush()
        raise SystemExit(1)


def refuses_in_one_line(main):
    """Decorator form of :func:`one_line_refusals` for a tool's ``main``."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        with one_line_refusals():
            return main(*args, **kwargs)

    return wrapper
