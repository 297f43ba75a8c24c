"""DG-Attention's memory-lean form: the fast form recomputed in backward. The gathered chunk
keys and values are 2k/L copies of K and V; recomputing the gathers and the attention keeps only
q, k and v (the qkv output) for backward."""
from torch.utils.checkpoint import checkpoint

from ..forms import register, traced_by_this_dynamo
from .grouped import grouped_attention_fast

__all__ = ['grouped_attention_lean']


# a checkpoint given the routing tuple: not under torch < 2.5's torch.compile
@register('dg.attention', 'lean', available=traced_by_this_dynamo)
def grouped_attention_lean(q, k, v, routing, scale, chunk_size=None, dropout_p=0.):
    return checkpoint(grouped_attention_fast, q, k, v, routing, scale, chunk_size, dropout_p,
                      use_reentrant=False)
