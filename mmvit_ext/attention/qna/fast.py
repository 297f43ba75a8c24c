"""QnA's fast form: two depthwise convolutions, no k*k-sized tensor and no key ever
materialised; the largest intermediate is ``(B, H, W, nq * F)``, so memory is linear in the image
and independent of k. Standard ops only, so it is the traceable form too; the compiled form
(``compiled.py``) is this core with its convolutions' zero padding made explicit.

The core runs in fp32 even under autocast (``exp`` overflows in fp16) and subtracts, per image,
query and head, the maximum score over all positions (and per channel the maximum of ``rpe``): a
constant factor of every numerator and denominator term, so the ratio is unchanged while ``exp``
can no longer overflow. (The official form overflows once a score exceeds ~88; this one is exact
while the scores of one image, query and head span less than ~87, beyond which a whole window
could underflow.)
"""
import torch
import torch.nn.functional as F

from ..forms import register
from .module import normalized_queries

__all__ = ['qna_attention_fast', 'qna_core']


def _scores_and_values(x, query, key_weight, value_weight, heads):
    """Scores ``(B, H, W, nq*h)`` (channel q*h + head) and values ``(B, H, W, F)``.

    Keys are never formed: the queries are folded into the key projection first
    (``(Din, nq, h)``), as the official fused layer does.
    """
    din = x.shape[-1]
    nq, feats = query.shape
    q = normalized_queries(query, heads)
    folded = torch.einsum('chd,qhd->cqh', key_weight.reshape(din, heads, feats // heads), q)
    scores = x @ folded.reshape(din, nq * heads)
    values = F.linear(x, value_weight)
    return scores, values


def qna_core(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads: int,
             kernel_size: int, stride: int = 1, explicit_padding: bool = False):
    """The QnA core, ``(B, H, W, C)`` in, ``(B, H', W', F)`` out. ``explicit_padding``: zero-pad
    the convolutions' inputs with ``F.pad`` instead of the convolutions' own padding (same
    values; see ``compiled.py`` for why)."""
    B, H, W, _ = x.shape
    nq, feats = query.shape
    d = feats // heads
    k, pad = kernel_size, (kernel_size - 1) // 2
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        scores, values = _scores_and_values(x, query.float(), key_weight.float(),
                                            value_weight.float(), heads)
        # exp(s - max): a per-(image, query, head) constant that cancels in num / den
        scores = scores - scores.detach().flatten(1, 2).amax(dim=1)[:, None, None, :]
        e = scores.exp()  # (B, H, W, nq*h)
        rpe = rpe_bias.float()
        k_den = (rpe - rpe.detach().amax(dim=0, keepdim=True)).exp()  # (k*k, nq*h)
        k_num = k_den * attn_scale.float().reshape(k * k, nq * heads)
        weighted = (e.reshape(B, H, W, nq, heads, 1) * values.reshape(B, H, W, 1, heads, d))
        # each (query, head) kernel once per channel of the head: an expand, not
        # repeat_interleave, whose repeat count (a traced size under torch.jit.trace) would
        # become a CPU index tensor and fail on CUDA
        k_num = k_num.t()[:, None].expand(nq * heads, d, k * k)
        # channels-last views: the depthwise convs read NHWC memory directly
        num_in = weighted.reshape(B, H, W, nq * feats).permute(0, 3, 1, 2)
        den_in = e.permute(0, 3, 1, 2)
        conv_pad = pad
        if explicit_padding:
            num_in, den_in = F.pad(num_in, (pad, ) * 4), F.pad(den_in, (pad, ) * 4)
            conv_pad = 0
        num = F.conv2d(num_in, k_num.reshape(nq * feats, 1, k, k), stride=stride,
                       padding=conv_pad, groups=nq * feats)
        den = F.conv2d(den_in, k_den.t().reshape(nq * heads, 1, k, k), stride=stride,
                       padding=conv_pad, groups=nq * heads)
        Ho, Wo = num.shape[2:]
        num = num.permute(0, 2, 3, 1).reshape(B, Ho, Wo, nq, heads, d)
        den = den.permute(0, 2, 3, 1).reshape(B, Ho, Wo, nq, heads, 1)
        return (num / den).sum(dim=3).reshape(B, Ho, Wo, feats)


@register('qna', ('fast', 'traceable'))
def qna_attention_fast(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads: int,
                       kernel_size: int, stride: int = 1):
    # the convolutions' own padding: mkldnn (and onnxruntime) read the channels-last views in place
    return qna_core(x, query, key_weight, value_weight, rpe_bias, attn_scale, heads,
                    kernel_size, stride)
