"""The project's refusals, and how its tools end on one: one ``error: ...`` line, exit status 1.

Each refusal is an exception whose message already says what is wrong and how to fix it; a
traceback through mmengine's Runner adds nothing to it. The project's entry points
(``tools/train.py``, ``tools/test.py``, the converters, the deployment tools, and so ``mim train
mmvit_ext`` and ``dist_train.sh``) run their ``main`` under :func:`one_line_refusals`; nothing is
installed process-wide (``sys.excepthook`` is left alone), so any other program keeps Python's
behaviour. Every other exception keeps its full traceback. ``MMVIT_TRACEBACK=1`` shows the
traceback for refusals too.
"""
import contextlib
import errno
import functools
import os
import sys

__all__ = ['ConfigValueError', 'user_errors', 'one_line_refusals', 'refusal_message']


class ConfigValueError(ValueError):
    """A config value that cannot work, named with the key, the value and what is allowed."""


def user_errors() -> tuple:
    """The exception types that are refusals of bad input, not bugs."""
    from ..checkpoint import CheckpointMismatchError, NonFiniteCheckpointError
    from ..datasets.coco_checks import CocoAnnotationError
    from ..engine.guards import (CheckpointSaveError, NonFiniteStateError, ResumeError,
                                 WorkDirLockedError)
    from .checkfile import CorruptCheckpointError
    from .data_check import DatasetNotFoundError
    from .safe_load import UnsafeCheckpointError
    from .torch_features import UnsupportedTorchError
    return (UnsupportedTorchError, CheckpointMismatchError, NonFiniteCheckpointError, NonFiniteStateError,
            CorruptCheckpointError, UnsafeCheckpointError, DatasetNotFoundError,
            CocoAnnotationError, ConfigValueError, CheckpointSaveError, ResumeError,
            WorkDirLockedError)


def _root_refusal(exc: BaseException):
    """``exc`` or the refusal it was raised from (mmengine's registry re-raises build errors
    with the class prefixed, keeping the type; other layers chain them)."""
    refusals = user_errors()
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, refusals):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def refusal_message(exc: BaseException):
    """The one-line message for ``exc`` when it is a refusal (or a disk-full write), else None."""
    found = _root_refusal(exc)
    if found is not None:
        return ' '.join(str(found).split('\n'))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f'no space left on the device ({exc.filename or "a write"}): {exc.strerror}'
    return None


@contextlib.contextmanager
def one_line_refusals():
    """Turn a refusal raised inside the block into ``error: MESSAGE`` and exit status 1 (and
    keep third-party ``pkg_resources`` notices of lazily imported modules out of the output)."""
    from .quiet import third_party_deprecations
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
