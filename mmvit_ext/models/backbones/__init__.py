from .dgt import DGT
from .dilateformer import DilateFormer
from .qna_vit import QnAViT
from .sgformer import SGFormer

__all__ = ['DGT', 'DilateFormer', 'QnAViT', 'SGFormer']
