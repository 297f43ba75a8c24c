"""QnA's memory-lean form: the fast form recomputed in backward. The fast core keeps six
``(B, H, W, nq*F)``-sized tensors (the exponentials, the weighted values, the two convolution
outputs) for a ``(B, H, W, C)`` input; recomputing the core keeps only its input, at the price
of one more core forward (two thin matmuls, the exponentials, two depthwise convolutions)."""
from torch.utils.checkpoint import checkpoint

from ..forms import register
from .fast import qna_attention_fast

__all__ = ['qna_attention_lean']


@register('qna', 'lean')
def qna_attention_lean(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads: int,
                       kernel_size: int, stride: int = 1):
    # no random op inside, so the RNG state need not be saved and restored
    return checkpoint(qna_attention_fast, x, query, key_weight, value_weight, rpe_bias,
                      attn_scale, heads, kernel_size, stride, use_reentrant=False,
                      preserve_rng_state=False)
