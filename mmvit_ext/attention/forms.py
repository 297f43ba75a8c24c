"""How each operator runs: the one place that decides.

Every operator of this package (the four attentions, their pieces, and the few shape helpers
whose fast form tests a size) has implementations registered under a *form*:

``'fast'``
    The default: the quickest form on the device (custom autograd functions, cached indices,
    size tests that skip work).
``'reference'``
    The slow, explicit computation the other forms are checked against (unfold, loops over
    windows and chunks, dense masks). For tests and for reading.
``'traceable'``
    Standard ops only and no Python test of a size, so a traced or exported graph follows the
    input size: what ``torch.jit.trace``, the ONNX exporters, ``torch.export`` and
    ``torch.compile`` need. Same values as ``'fast'`` up to float rounding.
``'lean'``
    Recomputes in backward what ``'fast'`` keeps (memory for time): for training where memory
    limits the batch. Same values as ``'fast'``.
``'compiled'``
    For ``torch.compile`` only, where an operator's traceable form compiles to slow code (QnA's
    depthwise convolutions) or fails on an older compiler (DGT's attention on torch < 2.5); an
    operator without it compiles its ``'traceable'`` form. Same values as ``'fast'``.

:func:`dispatch` (and :func:`choose`) picks an implementation by one rule:

1. the forms named by the innermost :func:`attention_form` block, in its order;
2. otherwise, while a tracer or compiler runs (``torch.jit`` trace or script, ``torch.onnx``
   export, ``torch.compile`` / ``torch.export``): ``'traceable'``, and under ``torch.compile``
   (not ``torch.export``) ``'compiled'`` before it and, where rule 3 would choose ``'lean'``,
   ``'lean'`` before both (compiled training keeps what eager training keeps);
3. otherwise, when a gradient is needed and memory-lean is on: ``'lean'`` (on by default on
   every device, so that training keeps the same activations everywhere;
   ``MMVIT_MEMORY_LEAN=0``, read once when this module is imported, turns it off: faster by
   up to a quarter of a training step on the CPU (DGT), at up to 2.7x its activations);
4. otherwise ``'fast'``;

then ``'fast'`` for an operator that has none of the forms asked for. Within a form, the
available implementation with the highest priority wins: a backend that runs only on some
devices or needs an extra package (NATTEN for MSDA on CUDA) registers under ``'fast'`` with a
higher priority and an ``available`` test, in a file of its own (see
``docs/en/architecture.md``). An implementation for ``torch.compile`` alone (QnA's lean form
that recomputes the compiled core) tests :func:`under_torch_compile` there; one whose
autograd function takes modules (DGT's lean forms) tests :func:`traced_by_this_dynamo`, as
torch < 2.5's dynamo cannot trace it.

Under ``torch.compile`` a lean form's custom autograd function does not decide what is kept:
AOTAutograd traces it into one joint graph, and its partitioner chooses the saved tensors
itself (an MLP's hidden activation both before and after the GELU: it does not recompute a
result the backward must materialise anyway). A checkpointed region is one it must recompute.
So an operator whose eager lean form is such a function also registers its plain form as a
checkpointed region, for ``torch.compile`` on torch >= 2.5 (:func:`register_checkpointed_lean`).

The forms are decided here only: no model file tests whether it is traced, and nothing else
keeps a mode. Other layers choose a form with :func:`attention_form` (the deployment tools, the
FLOP counter, the tests).
"""
import contextlib
import os
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch.utils.checkpoint import checkpoint

from ..utils.torch_features import torch_version

__all__ = ['FORMS', 'register', 'dispatch', 'choose', 'attention_form', 'requested_forms',
           'implementations', 'tracing', 'compiling', 'under_torch_compile',
           'traced_by_this_dynamo', 'under_old_torch_compile', 'under_new_torch_compile',
           'register_checkpointed_lean', 'memory_lean_default']

FORMS = ('fast', 'reference', 'traceable', 'lean', 'compiled')


class Implementation(NamedTuple):
    op: str
    form: str
    name: str
    fn: Callable
    available: Optional[Callable]
    priority: int


_TABLE: Dict[str, Dict[str, List[Implementation]]] = {}


def register(op: str, forms, name: Optional[str] = None, available: Optional[Callable] = None,
             priority: int = 0) -> Callable:
    """Decorator: ``fn`` implements operator ``op`` in ``forms`` (a form or several).

    ``available(*args, **kwargs)`` (optional) says whether it can run on these arguments (a
    device, an installed package); ``priority`` orders implementations of one form."""
    forms = (forms, ) if isinstance(forms, str) else tuple(forms)
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise ValueError(f'unknown form(s) {unknown} for {op}; the forms are {FORMS}')

    def add(fn: Callable) -> Callable:
        for form in forms:
            entries = _TABLE.setdefault(op, {}).setdefault(form, [])
            entries.append(Implementation(op, form, name or fn.__name__, fn, available,
                                          priority))
            entries.sort(key=lambda e: -e.priority)
        return fn

    return add


def implementations(op: str) -> Dict[str, List[Implementation]]:
    """The registered implementations of ``op`` by form (for the docs and tests)."""
    if op not in _TABLE:
        raise KeyError(f'no operator {op!r}; the operators are {sorted(_TABLE)}')
    return {form: list(entries) for form, entries in _TABLE[op].items()}


# ----------------------------------------------------------------------------- the context
_REQUESTED: List[Tuple[str, ...]] = []  # innermost last; only attention_form changes it


@contextlib.contextmanager
def attention_form(*forms: str) -> Iterator[None]:
    """Run every operator in the first of ``forms`` it has (else ``'fast'``) inside the block.

    ``attention_form('reference')``: the slow forms (tests); ``attention_form('traceable')``:
    what exporters see; ``attention_form('lean')`` / ``('fast')``: memory-lean on / off on any
    device. Blocks nest; the innermost wins."""
    unknown = [f for f in forms if f not in FORMS and not _is_backend(f)]
    if not forms or unknown:
        raise ValueError(f'attention_form takes forms from {FORMS} (or registered backend '
                         f'names), got {forms}')
    _REQUESTED.append(tuple(forms))
    try:
        yield
    finally:
        _REQUESTED.pop()


def requested_forms() -> Tuple[str, ...]:
    """The forms the innermost :func:`attention_form` block asks for (``()`` outside one)."""
    return _REQUESTED[-1] if _REQUESTED else ()


def _is_backend(name: str) -> bool:
    return any(e.name == name for forms in _TABLE.values() for es in forms.values() for e in es)


def tracing() -> bool:
    """Whether a tracer or compiler is running (rule 2 of the module doc)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    onnx = getattr(torch, 'onnx', None)
    if onnx is not None and getattr(onnx, 'is_in_onnx_export', lambda: False)():
        return True
    return _dynamo_compiling()


def _compiler_tests() -> Tuple[Callable[[], bool], Callable[[], bool]]:
    """torch's tests of whether dynamo traces and whether it exports, looked up once here: on
    torch 2.1 dynamo broke the graph on a module attribute it had to look for while tracing."""
    compiler = getattr(torch, 'compiler', None)
    is_compiling = getattr(compiler, 'is_compiling', None)
    if is_compiling is None:  # torch < 2.3: dynamo's own (mmengine's runner imports it anyway)
        from torch._dynamo import is_compiling
    return is_compiling, getattr(compiler, 'is_exporting', None) or (lambda: False)


_IS_COMPILING, _IS_EXPORTING = _compiler_tests()


def _dynamo_compiling() -> bool:
    """Whether dynamo traces (``torch.compile`` or ``torch.export``)."""
    return bool(_IS_COMPILING())


def compiling() -> bool:
    """Whether ``torch.compile`` traces, and not ``torch.export`` (rule 2's ``'compiled'``)."""
    return _dynamo_compiling() and not _IS_EXPORTING()


def under_torch_compile(*args, **kwargs) -> bool:
    """An ``available`` test (see :func:`register`) for an implementation that only
    ``torch.compile`` should run, such as a lean form recomputing a compiled form."""
    return compiling()


# torch < 2.5: dynamo cannot trace an autograd function or checkpoint given non-tensor
# arguments (torch 2.1.2 breaks the graph there, and in DGT a module's head count then turned
# symbolic and failed an assertion inside dynamo); 2.5.1 and 2.13 trace them. 2.2-2.4 are not
# measured and count as old: what runs instead compiles on 2.1
_OLD_DYNAMO = torch_version() < (2, 5)


def traced_by_this_dynamo(*args, **kwargs) -> bool:
    """An ``available`` test (see :func:`register`) for an implementation whose autograd
    function or checkpoint takes non-tensor arguments (modules, a routing tuple): false under
    ``torch.compile`` of a torch older than 2.5, where the operator's next form runs instead
    (compiled training then keeps what the compiler's partition keeps); true otherwise."""
    return not (_OLD_DYNAMO and compiling())


def under_old_torch_compile(*args, **kwargs) -> bool:
    """An ``available`` test for a ``'compiled'`` implementation that works around torch <
    2.5's compiler (DGT's attention: torch 2.1's inductor expects another output layout from
    the CPU attention kernel than the kernel gives)."""
    return _OLD_DYNAMO and compiling()


def under_new_torch_compile(*args, **kwargs) -> bool:
    """An ``available`` test for an implementation for ``torch.compile`` of torch >= 2.5 only
    (a checkpointed region given modules, see :func:`register_checkpointed_lean`)."""
    return compiling() and not _OLD_DYNAMO


def register_checkpointed_lean(op: str, plain: Callable, applies: Callable) -> Callable:
    """Register ``plain`` (``op``'s fast form, run on the same arguments) as a checkpointed
    region, ``op``'s lean form under ``torch.compile`` of torch >= 2.5 where ``applies(*args)``
    (the eager lean form's test). Its partitioner then keeps the region's inputs and recomputes
    the rest, as the eager lean form does (see the module doc). -> the registered function."""

    def available(*args, **kwargs):
        return under_new_torch_compile() and applies(*args, **kwargs)

    def checkpointed(*args):
        # no random op inside these forms: the RNG state need not be saved and restored
        return checkpoint(plain, *args, use_reentrant=False, preserve_rng_state=False)

    checkpointed.__name__ = checkpointed.__qualname__ = f'{plain.__name__}_checkpointed'
    register(op, 'lean', available=available, priority=1)(checkpointed)
    return checkpointed


def _read_memory_lean_env() -> Optional[bool]:
    value = os.environ.get('MMVIT_MEMORY_LEAN', 'auto').strip().lower()
    choices = {'auto': None, '1': True, '0': False}
    if value not in choices:
        raise ValueError(f"MMVIT_MEMORY_LEAN must be 'auto', '1' or '0', got {value!r}")
    return choices[value]


_MEMORY_LEAN_ENV = _read_memory_lean_env()


def memory_lean_default(device) -> bool:
    """Whether rule 3 applies on ``device``: yes on every device unless ``MMVIT_MEMORY_LEAN=0``
    (the argument stays for a per-device rule)."""
    if _MEMORY_LEAN_ENV is not None:
        return _MEMORY_LEAN_ENV
    return True


def _tensors(args, kwargs) -> Iterator[torch.Tensor]:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value


def _preferences(args, kwargs) -> Sequence[str]:
    asked = requested_forms()
    if asked:
        return asked
    lean = _lean_wanted(args, kwargs)
    if tracing():
        if not compiling():
            return ('traceable', )
        # torch.compile keeps the activations eager keeps: its partitioner, left to the
        # traceable forms, kept 2.2x eager's for DGT-T (256x256, torch 2.13)
        return ('lean', 'compiled', 'traceable') if lean else ('compiled', 'traceable')
    return ('lean', ) if lean else ('fast', )


def _lean_wanted(args, kwargs) -> bool:
    """A gradient is needed through these arguments and memory-lean is on for their device."""
    if not torch.is_grad_enabled():
        return False
    tensors = [t for t in _tensors(args, kwargs) if t.requires_grad]
    # a list and its length, not any() over a generator or bool() of a list: torch 2.1's
    # dynamo broke the graph on those, and the rest of the rule then ran outside the trace
    # (choosing eager's forms)
    return len(tensors) > 0 and memory_lean_default(tensors[0].device)


def choose(op: str, *args, **kwargs) -> Implementation:
    """The implementation of ``op`` that runs on these arguments (see the module doc)."""
    forms = _TABLE.get(op)
    if forms is None:
        raise KeyError(f'no operator {op!r}; the operators are {sorted(_TABLE)}')
    for wanted in tuple(_preferences(args, kwargs)) + ('fast', ):
        # indexing, not dict.get: torch 2.1's dynamo broke the graph on get
        if wanted in forms:
            candidates = forms[wanted]
        else:  # a backend's name
            candidates = [e for es in forms.values() for e in es if e.name == wanted]
        for entry in candidates:
            if entry.available is None or entry.available(*args, **kwargs):
                return entry
    raise RuntimeError(f'no implementation of {op} can run on these inputs (forms '
                       f'{sorted(forms)})')


def dispatch(op: str, *args, **kwargs):
    """Run ``op`` in the form :func:`choose` picks."""
    return choose(op, *args, **kwargs).fn(*args, **kwargs)
