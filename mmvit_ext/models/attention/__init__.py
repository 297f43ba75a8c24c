from .dg_attention import DynamicGroupAttention, dg_attention_reference, grouped_attention
from .global_attention import GlobalAttention, global_attention_reference
from .msda import (MultiScaleDilatedAttention, dilated_local_attention,
                   dilated_local_attention_reference)
from .qna import QnAAttention, WindowMSA, qna_attention, qna_reference
from .sg_attention import (FullAttention, HybridScaleAttention,
                           SelfGuidedAttention)

__all__ = [
    'DynamicGroupAttention', 'dg_attention_reference', 'grouped_attention',
    'GlobalAttention', 'global_attention_reference',
    'MultiScaleDilatedAttention', 'dilated_local_attention',
    'dilated_local_attention_reference', 'QnAAttention', 'WindowMSA', 'qna_attention',
    'qna_reference', 'HybridScaleAttention', 'SelfGuidedAttention', 'FullAttention'
]
