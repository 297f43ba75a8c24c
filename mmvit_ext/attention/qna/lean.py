"""QnA's memory-lean forms: the core recomputed in backward. The fast core keeps six
``(B, H, W, nq*F)``-sized tensors (the exponentials, the weighted values, the two convolution
outputs) for a ``(B, H, W, C)`` input; recomputing the core keeps only its input, at the price
of one more core forward (two thin matmuls, the exponentials, two depthwise convolutions).

Two implementations of the one form: eager recomputes the fast core; under ``torch.compile``
the seam takes the one that recomputes the compiled core (explicit zero padding, see
``compiled.py``), since inductor runs the fast core's padded depthwise convolutions in its slow
NCHW kernel (QnA-ViT-T's compiled training step at 512x512 took 2586 ms with the fast core
against 1591 ms without the lean form)."""
from torch.utils.checkpoint import checkpoint

from ..forms import register, under_torch_compile
from .compiled import qna_attention_compiled
from .fast import qna_attention_fast

__all__ = ['qna_attention_lean', 'qna_attention_lean_compiled']


@register('qna', 'lean')
def qna_attention_lean(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads: int,
                       kernel_size: int, stride: int = 1):
    # no random op inside, so the RNG state need not be saved and restored
    return checkpoint(qna_attention_fast, x, query, key_weight, value_weight, rpe_bias,
                      attn_scale, heads, kernel_size, stride, use_reentrant=False,
                      preserve_rng_state=False)


@register('qna', 'lean', available=under_torch_compile, priority=1)
def qna_attention_lean_compiled(x, query, key_weight, value_weight, rpe_bias, attn_scale,
                                heads: int, kernel_size: int, stride: int = 1):
    return checkpoint(qna_attention_compiled, x, query, key_weight, value_weight, rpe_bias,
                      attn_scale, heads, kernel_size, stride, use_reentrant=False,
                      preserve_rng_state=False)
