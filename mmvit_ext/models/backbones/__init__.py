from .dilateformer import DilateFormer
from .sgformer import SGFormer

__all__ = ['DilateFormer', 'SGFormer']
