from .dilateformer import DilateFormer

__all__ = ['DilateFormer']
