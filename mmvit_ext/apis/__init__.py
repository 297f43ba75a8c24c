"""Using the project's models from Python: by name (:mod:`.model_index`), from a config
(:mod:`.build`, :mod:`.config_path`).

    >>> import mmvit_ext.apis as apis
    >>> apis.list_models('mask-rcnn_dgt*')
    >>> det = apis.inferencer('mask-rcnn_dgt-t_fpn_1x_coco', weights='work_dirs/x/epoch_12.pth')
    >>> det('demo.jpg')
"""
from .build import build_model_from_cfg
from .config_path import resolve_config_path
from .model_index import find_model, inferencer, list_models

__all__ = ['inferencer', 'list_models', 'find_model', 'build_model_from_cfg',
           'resolve_config_path']
