"""Public entry points for using the project's models by name (see :mod:`mmvit_ext.model_index`).

    >>> import mmvit_ext.apis as apis
    >>> apis.list_models('mask-rcnn_dgt*')
    >>> det = apis.inferencer('mask-rcnn_dgt-t_fpn_1x_coco', weights='work_dirs/x/epoch_12.pth')
    >>> det('demo.jpg')
"""
from .model_index import find_model, inferencer, list_models

__all__ = ['inferencer', 'list_models', 'find_model']
