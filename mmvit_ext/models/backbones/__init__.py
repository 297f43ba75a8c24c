from .attention_pyramid import AttentionPyramid
from .dgt import DGT
from .dilateformer import DilateFormer
from .qna_vit import QnAViT
from .sgformer import SGFormer

__all__ = ['AttentionPyramid', 'DGT', 'DilateFormer', 'QnAViT', 'SGFormer']
