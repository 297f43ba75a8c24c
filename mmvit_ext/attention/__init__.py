"""The attention operators of mmvit_ext, usable with torch alone.

    from mmvit_ext.attention import MultiScaleDilatedAttention, QnAAttention
    from mmvit_ext.attention import attention_form

Nothing here imports mmengine, mmcv, mmdet, mmseg or mmpretrain (an import-linter contract says
so), so the four attentions work in any PyTorch model:

- :class:`MultiScaleDilatedAttention` (DilateFormer, :mod:`.msda`);
- :class:`QnAAttention` and :class:`WindowMSA` (QnA-ViT, :mod:`.qna`);
- :class:`HybridScaleAttention`, :class:`SelfGuidedAttention`, :class:`FullAttention`
  (SG-Former, :mod:`.sg`);
- :class:`DynamicGroupAttention` (DGT, :mod:`.dg`);
- :class:`GlobalAttention` (DilateFormer stages 3-4).

How each runs (fast, reference, traceable, memory-lean, or a registered backend) is decided in
:mod:`.forms` only; :func:`attention_form` chooses for a block of code.
"""
from . import dg, msda, qna, sg  # noqa: F401
from .dg import DynamicGroupAttention
from .forms import FORMS, attention_form, choose, dispatch, implementations, register
from .global_attention import GlobalAttention
from .msda import MultiScaleDilatedAttention
from .qna import QnAAttention, WindowMSA
from .sg import FullAttention, HybridScaleAttention, SelfGuidedAttention

__all__ = ['MultiScaleDilatedAttention', 'QnAAttention', 'WindowMSA', 'HybridScaleAttention',
           'SelfGuidedAttention', 'FullAttention', 'DynamicGroupAttention', 'GlobalAttention',
           'attention_form', 'register', 'dispatch', 'choose', 'implementations', 'FORMS']
