"""The project's refusals, and how they end a command: one ``error: ...`` line, exit status 1.

Each refusal is an exception whose message already says what is wrong and how to fix it; a
traceback through mmengine's Runner adds nothing to it. :func:`install_excepthook` (run when
``mmvit_ext`` is imported, so also under ``mim train/test`` and ``torchrun``) prints these
exceptions as one line when they end a program; every other exception keeps Python's full
traceback. ``MMVIT_TRACEBACK=1`` shows the traceback for refusals too.
"""
import os
import sys

__all__ = ['user_errors', 'install_excepthook']


def user_errors() -> tuple:
    """The exception types that are refusals of bad input, not bugs."""
    from ..checkpoint import CheckpointMismatchError, NonFiniteCheckpointError
    from ..datasets.coco_checks import CocoAnnotationError
    from ..engine.runner_guards import NonFiniteLossError
    from .checkfile import CorruptCheckpointError
    from .data_check import DatasetNotFoundError
    from .safe_load import UnsafeCheckpointError
    return (CheckpointMismatchError, NonFiniteCheckpointError, NonFiniteLossError,
            CorruptCheckpointError, UnsafeCheckpointError, DatasetNotFoundError,
            CocoAnnotationError)


_installed = False


def install_excepthook() -> None:
    global _installed
    if _installed:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            refusal = issubclass(kind, user_errors())
        except Exception:  # never let the hook itself hide the original error
            refusal = False
        if refusal and not os.environ.get('MMVIT_TRACEBACK'):
            sys.stderr.write(f'error: {value}\n(set MMVIT_TRACEBACK=1 for the traceback)\n')
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    sys.excepthook = hook
    _installed = True
