"""Rewrites for export: registered by what they replace, outside the model code, and applied only
inside :func:`exporting` (restored after, also when the export fails).

Two kinds (:mod:`.rewrites` registers the project's):

* :func:`rewrite_attribute` replaces an attribute of a framework module or class by its dotted
  name (``'mmdet.models.necks.fpn.F'``) with what the decorated function returns for the
  original;
* :func:`rewrite_context` enters a context manager (the attention forms the exporter needs).

Each is registered for the exporters it applies to: ``'torchscript'`` (``torch.onnx.export``,
TorchScript-based), ``'dynamo'`` / ``'export'`` (``torch.export``, and the dynamo ONNX exporter
from its program), ``'trace'`` (``torch.jit.trace``), ``'compile'`` (``torch.compile``) and
``'eager'`` (eager PyTorch in the forms the exporters see, for the checks).
"""
import contextlib
import importlib
from typing import Callable, ContextManager, Iterator, List, NamedTuple, Sequence

__all__ = ['EXPORTERS', 'rewrite_attribute', 'rewrite_context', 'exporting', 'registered']

EXPORTERS = ('torchscript', 'dynamo', 'export', 'trace', 'compile', 'eager')


class _Rewrite(NamedTuple):
    target: str  # a dotted attribute name, or '' for a context
    make: Callable
    exporters: Sequence[str]


_REWRITES: List[_Rewrite] = []


def _check(exporters) -> tuple:
    exporters = tuple(exporters)
    unknown = [e for e in exporters if e not in EXPORTERS]
    if unknown:
        raise ValueError(f'unknown exporters {unknown}; they are {EXPORTERS}')
    return exporters


def rewrite_attribute(target: str, exporters: Sequence[str] = EXPORTERS) -> Callable:
    """Decorator: while exporting with one of ``exporters``, ``target`` (``module.attr`` or
    ``module.Class.attr``) is what ``make(original)`` returns."""
    exporters = _check(exporters)

    def register(make: Callable) -> Callable:
        _REWRITES.append(_Rewrite(target, make, exporters))
        return make

    return register


def rewrite_context(exporters: Sequence[str] = EXPORTERS) -> Callable:
    """Decorator: while exporting with one of ``exporters``, the context manager that
    ``make(exporter)`` returns is entered."""
    exporters = _check(exporters)

    def register(make: Callable[[str], ContextManager]) -> Callable:
        _REWRITES.append(_Rewrite('', make, exporters))
        return make

    return register


def registered(exporter: str) -> List[str]:
    """What :func:`exporting` applies for ``exporter`` (names, for the docs and tests)."""
    return [r.target or r.make.__name__ for r in _REWRITES if exporter in r.exporters]


def _owner(target: str):
    """The module or class that holds ``target``'s attribute (imported by its code-given
    name)."""
    parts = target.split('.')
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(f'cannot import the owner of {target}')


@contextlib.contextmanager
def exporting(exporter: str) -> Iterator[None]:
    """Apply every rewrite registered for ``exporter`` for the block; restore them after."""
    _check((exporter, ))
    with contextlib.ExitStack() as stack:
        for rewrite in _REWRITES:
            if exporter not in rewrite.exporters:
                continue
            if not rewrite.target:
                stack.enter_context(rewrite.make(exporter))
                continue
            owner, name = _owner(rewrite.target)
            original = getattr(owner, name)
            setattr(owner, name, rewrite.make(original))
            stack.callback(setattr, owner, name, original)
        yield
