"""MSDA through NATTEN's fused neighbourhood attention: an optional backend (``pip install natten``,
CUDA; see natten.org for prebuilt wheels).

NATTEN's window is shifted inwards at the border (every query sees k*k real tokens), while MSDA's
official semantics give out-of-map neighbours zero keys and values that still take a share of the
softmax. Zero-padding q, k and v by ``dilation * (k - 1) / 2`` on every side makes them agree: each
original query then lies at least that far from the padded border, so its NATTEN window is the
centred one, and the padded tokens are exactly the zero keys and values. The padded queries'
outputs are cropped away. One call per dilation group (the operator is called per group).

Chosen automatically on CUDA only when ``MMVIT_NATTEN=1`` (read once at import): it has not been
measured against the built-in form on a GPU yet (docs/en/benchmarks.md). ``attention_form('natten')``
asks for it by name. A configuration NATTEN has no kernel for (a head size, a dtype) falls back to
the built-in fast form with a one-time warning.
"""
import functools
import importlib.util
import os
import warnings

import torch
import torch.nn.functional as F

from ..forms import register
from .fast import dilated_local_attention_fast

__all__ = ['dilated_local_attention_natten', 'natten_installed', 'natten_applies',
           'natten_auto']


def _read_env() -> bool:
    value = os.environ.get('MMVIT_NATTEN', '0').strip().lower()
    if value not in ('0', '1'):
        raise ValueError(f"MMVIT_NATTEN must be '0' (NATTEN only when asked for by name) or '1' "
                         f"(NATTEN for MSDA wherever it applies), got {value!r}")
    return value == '1'


natten_auto = _read_env()
# (head size, dtype, device type) NATTEN has refused once: the seam stops choosing it there
_NO_KERNEL = set()


@functools.lru_cache(maxsize=None)
def natten_installed() -> bool:
    """Whether the ``natten`` package can be imported (looked up once, not imported here)."""
    return importlib.util.find_spec('natten') is not None


def _kernel_key(q):
    return q.shape[2], q.dtype, q.device.type


def natten_applies(q, k, v, kernel_size, dilation, scale) -> bool:
    """Where the backend runs: CUDA tensors with ``natten`` installed, except where NATTEN has
    already said it has no kernel."""
    return q.is_cuda and natten_installed() and _kernel_key(q) not in _NO_KERNEL


def _padding(size: int, kernel_size: int, dilation: int):
    """(before, after) zero padding of one axis: the centred-window margin, and after it enough
    extra zeros that the axis holds NATTEN's minimum of ``kernel_size * dilation`` tokens (only
    for maps smaller than the dilation; the extra zeros lie outside every kept query's window)."""
    margin = dilation * (kernel_size - 1) // 2
    return margin, margin + max(0, dilation - size)


# Priority 10 puts it above the built-in fast form where it applies; -10 leaves it to be asked
# for by name only (attention_form('natten')).
@register('msda', 'fast', name='natten', available=natten_applies,
          priority=10 if natten_auto else -10)
def dilated_local_attention_natten(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                   kernel_size: int, dilation: int, scale: float,
                                   backend=None) -> torch.Tensor:
    """``(B, heads, head_dim, H, W)`` in and out, MSDA's semantics through ``natten.functional.
    na2d``. ``backend`` is passed to NATTEN (None: its own choice; the tests run
    ``'flex-fna'`` on the CPU, forward only)."""
    from natten.functional import na2d  # optional dependency, imported where it is used

    H, W = q.shape[-2:]
    top, bottom = _padding(H, kernel_size, dilation)
    left, right = _padding(W, kernel_size, dilation)

    def to_natten(t):  # (B, h, d, H, W) -> zero-padded (B, H', W', h, d)
        return F.pad(t, (left, right, top, bottom)).permute(0, 3, 4, 1, 2)

    try:
        out = na2d(to_natten(q), to_natten(k), to_natten(v), kernel_size=kernel_size,
                   dilation=dilation, scale=scale, backend=backend)
    except NotImplementedError as err:  # no NATTEN kernel for this head size / dtype / device
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = _kernel_key(q)
        if key not in _NO_KERNEL:
            _NO_KERNEL.add(key)
            warnings.warn(f'NATTEN has no kernel for MSDA with head size {q.shape[2]}, '
                          f'{q.dtype} on {q.device.type} ({reason}); using the built-in fast '
                          'form there', RuntimeWarning, stacklevel=2)
        return dilated_local_attention_fast(q, k, v, kernel_size, dilation, scale)
    return out[:, top:top + H, left:left + W].permute(0, 3, 4, 1, 2)
