"""The project's export rewrites (see :mod:`.rewriter`), each registered by what it replaces.

- ``mmdet.models.necks.fpn.F``: FPN's stride-2 extra level as a strided slice, which keeps a
  ``torch.export`` program's size free;
- the attention forms: every operator of :mod:`mmvit_ext.attention` in its ``traceable`` form,
  and, for the TorchScript-based ONNX exporter (which has no stable sort), SG-Former's
  significance order as ONNX TopK (the backend ``onnx_topk`` registered here).
"""
import torch
import torch.nn.functional as F

from ..attention import attention_form, register
from .rewriter import rewrite_attribute, rewrite_context

__all__ = ['stable_order_by_topk']


class _FunctionalForFPN:
    """``torch.nn.functional`` as mmdet's FPN module sees it while exporting.

    FPN's extra level is ``max_pool2d(x, 1, stride=2)``: the same values as ``x[..., ::2, ::2]``.
    torch 2.11's shape rule for pooling tests the parity of the input size, so ``torch.export``
    fixed a whole detector to the parity of the example's stride-32 map (a 256 x 320 program
    refused 352 x 384 inputs with torch 2.11; torch 2.13 keeps it free). The
    strided slice has a plain ``ceil(n / 2)`` size."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   return_indices=False):
        if kernel_size in (1, (1, 1)) and padding in (0, (0, 0)) and not ceil_mode \
                and not return_indices and isinstance(stride, int):
            return x[..., ::stride, ::stride]
        return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                            return_indices=return_indices)


@rewrite_attribute('mmdet.models.necks.fpn.F')
def _fpn_functional(original):
    return _FunctionalForFPN()


@register('sg.order', 'traceable', name='onnx_topk', priority=-1)
def stable_order_by_topk(keys):
    """Ascending TopK over the whole axis: its tie rule (lower index first, ONNX spec) is the
    stable order. Only where asked for by name (the TorchScript exporter's rewrite below):
    PyTorch's own topk promises no order for ties."""
    return torch.topk(keys, keys.shape[-1], dim=-1, largest=False, sorted=True)[1]


@rewrite_context()
def _traceable_attention(exporter: str):
    if exporter == 'torchscript':
        return attention_form('onnx_topk', 'traceable')
    return attention_form('traceable')
