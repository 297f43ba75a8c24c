from .dilateformer import DilateFormer
from .qna_vit import QnAViT
from .sgformer import SGFormer

__all__ = ['DilateFormer', 'QnAViT', 'SGFormer']
