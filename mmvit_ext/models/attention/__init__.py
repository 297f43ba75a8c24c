from .global_attention import GlobalAttention, global_attention_reference
from .msda import (MultiScaleDilatedAttention, dilated_local_attention,
                   dilated_local_attention_reference)
from .sg_attention import (FullAttention, HybridScaleAttention,
                           SelfGuidedAttention)

__all__ = [
    'GlobalAttention', 'global_attention_reference',
    'MultiScaleDilatedAttention', 'dilated_local_attention',
    'dilated_local_attention_reference', 'HybridScaleAttention', 'SelfGuidedAttention',
    'FullAttention'
]
