"""The project's refusals: one base class for every refusal of bad input.

Every refusal of bad input (a checkpoint that does not fit, a damaged file, a config value that
cannot work, a file that would run code, ...) is an exception derived from :class:`Refusal`,
whose message already says what is wrong and how to fix it; a traceback through mmengine's
Runner adds nothing to it. The project's entry points (``tools/train.py``, ``tools/test.py``, the
converters, the deployment tools, and so ``mim train mmvit_ext`` and ``dist_train.sh``) end on a
refusal in one ``error: ...`` line (:func:`mmvit_ext.utils.cli.one_line_refusals`); every other
exception keeps its full traceback.

Each refusal class also derives from the built-in type callers would catch for it
(``ValueError``, ``KeyError``, ``OSError``, ...). This module needs nothing but Python.
"""
import errno

__all__ = ['Refusal', 'ConfigValueError', 'refusal_message']


class Refusal(Exception):
    """Bad input, refused with a message that says what is wrong and how to fix it."""


class ConfigValueError(Refusal, ValueError):
    """A config value that cannot work, named with the key, the value and what is allowed."""


def _root_refusal(exc: BaseException):
    """``exc`` or the refusal it was raised from (mmengine's registry re-raises build errors
    with the class prefixed, keeping the type; other layers chain them)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, Refusal):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def refusal_message(exc: BaseException):
    """The one-line message for ``exc`` when it is a refusal (or a disk-full write), else None."""
    found = _root_refusal(exc)
    if found is not None:
        return ' '.join(_unwrap_worker(str(found)).split('\n'))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f'no space left on the device ({exc.filename or "a write"}): {exc.strerror}'
    return None


def _unwrap_worker(message: str) -> str:
    """A refusal raised in a DataLoader worker comes back as the same type carrying 'Caught X
    in DataLoader worker process N. Original Traceback (most recent call last): ...'; its own
    message is the traceback's last line, after the type."""
    if not message.startswith('Caught ') or '\nOriginal Traceback' not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split(': ', 1)[1] if ': ' in last else last
