"""Make the project's models findable by name in the frameworks' own lookups.

mmpretrain's ``get_model`` / ``list_models`` / ``ImageClassificationInferencer`` read
mmpretrain's ``ModelHub``; mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` read the
model index of their own package. :func:`install` (run when ``mmvit_ext`` is imported) adds this
project's ImageNet models to the ``ModelHub`` and lets the inferencers fall back to this
project's model index for names their package does not know, so
``DetInferencer('mask-rcnn_dilateformer-t_fpn_1x_coco')`` builds our config. No official weights
have a stable public URL (see the backbone READMEs), so models come with random weights unless
a checkpoint is given (``weights=PATH``).
"""
import os.path as osp
from typing import Dict, Iterator, Optional

__all__ = ['index_root', 'iter_models', 'find_model', 'install']


def index_root() -> Optional[str]:
    """Where ``model-index.yml`` and ``configs/`` live: the installed package's ``.mim`` or the
    checkout."""
    pkg = osp.dirname(osp.abspath(__file__))
    for root in (osp.join(pkg, '.mim'), osp.dirname(pkg)):
        if osp.isfile(osp.join(root, 'model-index.yml')) and osp.isdir(osp.join(root, 'configs')):
            return root
    return None


def iter_models() -> Iterator[Dict]:
    """Every model entry of the project's metafiles, its ``Config`` made absolute."""
    from mmengine.fileio import load
    root = index_root()
    if root is None:
        return
    for meta_path in load(osp.join(root, 'model-index.yml'))['Import']:
        for model in load(osp.join(root, meta_path)).get('Models', []):
            entry = dict(model)
            entry['Config'] = osp.join(root, entry['Config'])
            yield entry


def find_model(name: str) -> Optional[Dict]:
    name = name.lower()
    for entry in iter_models():
        aliases = entry.get('Alias', [])
        aliases = [aliases] if isinstance(aliases, str) else list(aliases)
        if entry['Name'].lower() == name or name in (a.lower() for a in aliases):
            return entry
    return None


def _register_mmpretrain() -> None:
    try:
        from mmpretrain.apis.model import ModelHub
        from modelindex.load_model_index import load
    except Exception:  # mmpretrain absent: nothing to register with
        return
    root = index_root()
    if root is None:
        return
    index = load(osp.join(root, 'model-index.yml'))
    index.build_models_with_collections()
    for metainfo in index.models:
        tasks = {r.task for r in (metainfo.results or [])}
        if not metainfo.config or ('Image Classification' not in tasks
                                   and not metainfo.config.endswith('_in1k.py')):
            continue  # ImageNet models only (entries without results have no quoted number)
        metainfo.config = osp.join(root, metainfo.config) if not osp.isabs(metainfo.config) \
            else metainfo.config
        ModelHub._models_dict.setdefault(metainfo.name.lower(), metainfo)


def _patch_inferencers() -> None:
    from mmengine.config import Config
    from mmengine.infer import BaseInferencer
    if getattr(BaseInferencer._load_model_from_metafile, '_mmvit', False):
        return
    original = BaseInferencer._load_model_from_metafile

    def load_model_from_metafile(self, model: str):
        try:
            return original(self, model)
        except ValueError:
            entry = find_model(model)
            if entry is None:
                raise
        cfg = Config.fromfile(entry['Config'])
        scope = cfg.get('default_scope')
        if scope != self.scope:
            raise ValueError(f'{model} is an {scope} model of mmvit_ext ({entry["Config"]}); '
                             f'the {type(self).__name__} builds {self.scope} models')
        weights = entry.get('Weights')
        return cfg, (weights[0] if isinstance(weights, list) else weights)

    load_model_from_metafile._mmvit = True
    BaseInferencer._load_model_from_metafile = load_model_from_metafile


def install() -> None:
    _register_mmpretrain()
    _patch_inferencers()
