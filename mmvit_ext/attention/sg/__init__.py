"""SG-Former attention (ICCV 2023, arXiv 2308.12216): hybrid-scale (H), self-guided (G), full (F).

Tokens are ``(B, N, C)`` in row-major order over ``hw = (H, W)``; any H, W works. One file per
piece: :mod:`.module` (the three blocks), :mod:`.window` (local windows), :mod:`.global_half`
(global attention to the reduced map, with the significance it gives), :mod:`.merge` (sorting and
merging by significance), :mod:`.reference` (the slow forms), :mod:`.tokens` (layouts).
"""
from . import reference  # noqa: F401  (register the reference forms)
from .global_half import global_attention_with_significance
from .merge import DEFAULT_MERGE_GROUPS, merge_bounds, merge_sorted_tokens, num_merged_tokens
from .module import FullAttention, HybridScaleAttention, SelfGuidedAttention
from .tokens import conv_on_tokens
from .window import window_attention, window_significance

__all__ = ['HybridScaleAttention', 'SelfGuidedAttention', 'FullAttention', 'window_attention',
           'window_significance', 'global_attention_with_significance', 'merge_sorted_tokens',
           'merge_bounds', 'num_merged_tokens', 'DEFAULT_MERGE_GROUPS', 'conv_on_tokens']
