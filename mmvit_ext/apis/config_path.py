"""Config files by path or by the name of a config an OpenMMLab package ships."""
import os.path as osp

__all__ = ['resolve_config_path']


def resolve_config_path(config: str) -> str:
    """``pkg::rel/path.py`` (a config shipped with an installed OpenMMLab package, e.g.
    ``mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``) -> its file; other paths unchanged."""
    if '::' not in config:
        return config
    from mmengine.config.utils import _get_package_and_cfg_path
    from mmengine.utils import get_installed_path
    package, rel = _get_package_and_cfg_path(config)
    path = osp.join(get_installed_path(package), '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{config}: no such config in the installed {package} ({path})')
    return path
