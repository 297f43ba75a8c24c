"""QnA's compiled form (``torch.compile`` only): the fast core with the zero padding of its two
depthwise convolutions made explicit (``F.pad``, then convolutions without padding; the same
values).

Why: inductor (``torch.compile`` on the CPU) hands a convolution a batch-1 input that is a view
of the product ``exp(s) * V`` with stride 0 on the batch axis, which mkldnn does not take for
channels-last: it copies the input to NCHW and runs the slow NCHW depthwise kernel (3-6x the
eager core). The explicit pad makes the convolution's input a fresh buffer that inductor lays out
channels-last and fills straight from the product. Eager keeps the convolutions' own padding (the
extra pad is one more pass there), and so do exporters: onnxruntime runs Pad -> Conv 12% slower
than the padded Conv (QnA-ViT-T's backbone at 800x1344, one thread: 2467 against 2194 ms)."""
from ..forms import register
from .fast import qna_core

__all__ = ['qna_attention_compiled']


@register('qna', 'compiled')
def qna_attention_compiled(x, query, key_weight, value_weight, rpe_bias, attn_scale,
                           heads: int, kernel_size: int, stride: int = 1):
    return qna_core(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads,
                    kernel_size, stride, explicit_padding=True)
