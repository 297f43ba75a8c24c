"""Where mmvit_ext registers its modules.

Modules go into mmengine's root ``MODELS`` registry. mmdet's, mmseg's and mmpretrain's ``MODELS``
are children of it, and a registry searches its parents for an unscoped type name, so
``dict(type='DilateFormer')`` builds from any of the three -- and this works whichever subset of
the frameworks is installed.
"""
from mmengine.registry import MODELS

__all__ = ['MODELS']
