"""Multi-Scale Dilated Attention (MSDA), the attention of DilateFormer stages 1-2.

Every query attends to the k x k neighbours around it at dilation r; the heads are split into
``len(dilations)`` contiguous groups and group g uses ``dilations[g]``. Neighbours that fall outside
the map are *zero-padded keys/values*: they give logit 0 and value 0 but still take a share of the
softmax (the official model's semantics, kept so that official weights give the same features).

The sliding-window core :func:`dilated_local_attention` has three forms, one file each:
``reference`` (the unfold formulation of the paper's code), ``fast`` (shift-and-accumulate with a
hand-written backward) and ``traceable`` (the same shift-and-accumulate in plain ops); and an
optional backend, ``natten`` (NATTEN's fused kernels on CUDA, see :mod:`.natten_backend`).
"""
from . import fast, natten_backend, reference, traceable  # noqa: F401  (register the forms)
from .module import MultiScaleDilatedAttention, dilated_local_attention

__all__ = ['MultiScaleDilatedAttention', 'dilated_local_attention']
