"""The project's models by name, through the frameworks' public mechanisms.

* mmpretrain: ``import mmvit_ext`` adds ``model-index.yml`` to mmpretrain's ``ModelHub`` with its
  public ``register_model_index``, so ``mmpretrain.get_model`` / ``list_models`` /
  ``ImageClassificationInferencer`` find our ImageNet models by name.
* mmdet, mmseg: their inferencers look names up only in their own package's model index and offer
  no way to add one, so names go through :func:`inferencer`
  (``mmvit_ext.apis.inferencer('mask-rcnn_dgt-t_fpn_1x_coco')``), which returns the framework's
  own ``DetInferencer`` / ``MMSegInferencer`` built from our config. A config path works with the
  frameworks' inferencers directly.

Lookup by name needs ``import mmvit_ext`` first in a fresh interpreter (configs import it through
``custom_imports``; a name does not). No official weights have a stable public URL (see the
backbone READMEs), so models come with their initial weights unless a checkpoint is given.
"""
import os.path as osp
from typing import Dict, Iterator, Optional

__all__ = ['index_root', 'iter_models', 'find_model', 'register_with_mmpretrain', 'inferencer',
           'list_models']


def index_root() -> Optional[str]:
    """Where ``model-index.yml`` and ``configs/`` live: the installed package's ``.mim`` or the
    checkout."""
    pkg = osp.dirname(osp.dirname(osp.abspath(__file__)))  # mmvit_ext/
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


def register_with_mmpretrain() -> bool:
    """Add the project's model index to mmpretrain's ``ModelHub`` through its public
    ``register_model_index``, so ``mmpretrain.get_model('dilateformer-t_8xb128_in1k')``,
    ``list_models`` and ``ImageClassificationInferencer`` find our ImageNet models (run by
    ``import mmvit_ext``). Returns False when mmpretrain is not installed."""
    global _registered
    if _registered:
        return True
    try:
        from mmpretrain.apis import ModelHub
    except Exception:  # noqa: BLE001  (mmpretrain absent: nothing to register with)
        return False
    classifiers = [_as_index_entry(e) for e in iter_models() if _is_imagenet_model(e)]
    if not classifiers:
        return False
    import tempfile

    import yaml
    # register_model_index reads a file: a temporary one that lists the ImageNet models only
    # (the detectors and segmentors are not mmpretrain models), with absolute config paths
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'mmvit_ext-mmpretrain-models.yml')
        with open(path, 'w') as f:
            yaml.safe_dump({'Models': classifiers}, f)
        try:
            ModelHub.register_model_index(path)
        except ValueError as e:  # registered already (e.g. a second copy of the package)
            if 'conflict' not in str(e):
                raise
    _registered = True
    return True


def _is_imagenet_model(entry: Dict) -> bool:
    tasks = {r.get('Task') for r in entry.get('Results') or []}
    return 'Image Classification' in tasks or entry['Config'].endswith('_in1k.py')


def _as_index_entry(entry: Dict) -> Dict:
    keep = ('Name', 'Config', 'Metadata', 'Results', 'Weights', 'Alias', 'Paper', 'README')
    return {k: v for k, v in entry.items() if k in keep and v is not None}


_registered = False

_INFERENCERS = {
    'mmdet': ('mmdet.apis', 'DetInferencer'),
    'mmseg': ('mmseg.apis', 'MMSegInferencer'),
    'mmpretrain': ('mmpretrain.apis', 'ImageClassificationInferencer'),
}


def inferencer(model: str, weights=None, device=None, **kwargs):
    """The framework's own inferencer for one of our models, by name or config path.

    mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` look names up only in their own
    package's model index (there is no public way to add one), so this is the entry point for
    names: ``mmvit_ext.apis.inferencer('mask-rcnn_dgt-t_fpn_1x_coco', weights='x.pth')`` returns a
    ``DetInferencer`` built from our config. ``weights`` is a checkpoint path; without it the
    model keeps its initial weights, since no official weights have a stable public URL.
    """
    import importlib
    from mmengine.config import Config
    entry = find_model(model)
    if entry is None and not osp.isfile(model):
        known = sorted(e['Name'] for e in iter_models())
        raise ValueError(f'{model!r} is neither a model name of mmvit_ext nor a config file. '
                         f'Known names ({len(known)}): {", ".join(known[:6])}, ... (all: '
                         '`mmvit_ext.apis.list_models()`)')
    config = entry['Config'] if entry is not None else model
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in _INFERENCERS:
        raise ValueError(f'{config} is a {scope} config; inferencers exist for '
                         f'{sorted(_INFERENCERS)}')
    module, name = _INFERENCERS[scope]
    if scope != 'mmpretrain' and cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # the weights come from `weights`, or none
    cls = getattr(importlib.import_module(module), name)
    if scope == 'mmpretrain':
        return cls(model=cfg, pretrained=weights or False, device=device, **kwargs)
    return cls(model=cfg, weights=weights, device=device, **kwargs)


def list_models(pattern: str = '*'):
    """Names of the project's models (fnmatch ``pattern``)."""
    import fnmatch
    return sorted(e['Name'] for e in iter_models() if fnmatch.fnmatch(e['Name'].lower(),
                                                                       pattern.lower()))
