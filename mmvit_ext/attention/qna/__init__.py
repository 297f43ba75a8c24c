"""QnA: local attention with learned queries (Arar, Shamir, Bermano; CVPR 2022, arXiv 2112.11435),
and QnA-ViT's windowed multi-head self-attention.

Every k x k window is attended by the same ``nq`` learned queries (unit-normalised per head, then
scaled by 1/sqrt(d)) instead of by its centre token. A token therefore has one score per query and
head, whatever window it falls in, and the window softmax becomes two depthwise convolutions::

    num = dwconv(exp(s) * V, exp(rpe) * a)      den = dwconv(exp(s), exp(rpe))
    out = sum_q num / den                        (s: scores, rpe: relative logit bias per offset,
                                                  a: learned per-offset scale, numerator only)

Out-of-image positions are zero in both convolutions, i.e. they are left out of the softmax (a
masked softmax, not zero keys). Forms: ``fast`` (that convolution form, which is also the
``traceable`` one), ``compiled`` (the same with explicit zero padding, for ``torch.compile``),
``lean`` (the fast form recomputed in backward) and ``reference`` (every
window explicitly); :class:`WindowMSA` has a ``fast``, a ``traceable`` and a ``reference`` form
too.
"""
from . import compiled, fast, lean, reference, window_msa  # noqa: F401  (register the forms)
from .baseline import local_attention_unfold
from .module import QnAAttention, lecun_normal_, normalized_queries, qna_attention
from .window_msa import WindowMSA

__all__ = ['QnAAttention', 'WindowMSA', 'qna_attention', 'normalized_queries', 'lecun_normal_',
           'local_attention_unfold']
