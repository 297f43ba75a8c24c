"""Fail fast, with directions, when a config's dataset is not on disk.

Without this, a missing COCO/ADE20K/ImageNet folder surfaces after model building as a bare
``FileNotFoundError`` from deep inside a dataset class.
"""
import os.path as osp
from typing import List, Sequence

from ..errors import Refusal

__all__ = ['DatasetNotFoundError', 'check_dataset_paths']

_HOW_TO_GET = {
    'CocoDataset': ('COCO 2017 (train2017/, val2017/, annotations/) from https://cocodataset.org, '
                    "e.g. with mmdet's `python tools/misc/download_dataset.py --dataset-name "
                    'coco2017 --save-dir data/coco --unzip`'),
    'ADE20KDataset': ('ADEChallengeData2016 (images/, annotations/) from '
                      'http://sceneparsing.csail.mit.edu, e.g. with mmdet\'s `python '
                      'tools/misc/download_dataset.py --dataset-name ade20k_2016 --save-dir '
                      'data/ade --unzip`'),
    'ImageNet': ('ImageNet-1k (train/, val/, meta/) from https://image-net.org; see '
                 'https://mmpretrain.readthedocs.io/en/latest/user_guides/dataset_prepare.html'),
}

SMALL_DATA_HINT = (
    'To run the same pipeline without the real data, generate the built-in small datasets with '
    '`python tools/misc/make_small_datasets.py data/small` and use the configs in '
    'configs/_small_/ (e.g. configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py).')


class DatasetNotFoundError(Refusal, FileNotFoundError):
    pass


def _datasets(node) -> List[dict]:
    """Leaf dataset configs under wrappers (RepeatDataset, ConcatDataset, ClassBalanced...)."""
    if not isinstance(node, dict):
        return []
    if 'datasets' in node:
        return [d for sub in node['datasets'] for d in _datasets(sub)]
    if 'dataset' in node:
        return _datasets(node['dataset'])
    return [node]


def _join(root, path):
    if not path:
        return None
    return path if osp.isabs(path) or not root else osp.join(root, path)


def _dataset_paths(ds) -> List[str]:
    root = ds.get('data_root') or ''
    expected = [root] if root else []
    ann = _join(root, ds.get('ann_file'))
    if ann:
        expected.append(ann)
    prefix = ds.get('data_prefix') or {}
    if isinstance(prefix, dict):
        expected += [_join(root, p) for p in prefix.values() if p]
    elif isinstance(prefix, str):
        expected.append(_join(root, prefix))
    return [p for p in expected if p]


def _evaluators(cfg, phase):
    ev = cfg.get(f'{phase}_evaluator')
    return ev if isinstance(ev, (list, tuple)) else [ev] if ev else []


def check_dataset_paths(cfg, phases: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Raise :class:`DatasetNotFoundError` naming every missing path and every config key that
    must change (each phase's ``data_root``, and evaluators' ``ann_file``)."""
    missing, keys, kinds, needed = [], [], [], False
    for phase in ('train', 'val', 'test'):  # every key that points there is named
        loader = cfg.get(f'{phase}_dataloader')
        if not loader:
            continue
        for ds in _datasets(loader.get('dataset')):
            absent = [p for p in _dataset_paths(ds) if not osp.exists(p)]
            if not absent:
                continue
            kind = ds.get('type', 'dataset')
            kind = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
            kinds.append(kind.split('.')[-1].replace('CheckedCocoDataset', 'CocoDataset'))
            needed = needed or phase in phases
            missing += [osp.abspath(p) for p in absent if osp.abspath(p) not in missing]
            keys.append(f'{phase}_dataloader.dataset.data_root (now {ds.get("data_root")!r})')
        for i, ev in enumerate(_evaluators(cfg, phase)):
            ann = ev.get('ann_file') if isinstance(ev, dict) else None
            if ann and not osp.exists(ann):
                needed = needed or phase in phases
                if osp.abspath(ann) not in missing:
                    missing.append(osp.abspath(ann))
                where = f'{phase}_evaluator' + (f'[{i}]' if len(_evaluators(cfg, phase)) > 1
                                                else '')
                keys.append(f'{where}.ann_file (now {ann!r})')
    if not needed:
        return
    how = '; '.join(dict.fromkeys(_HOW_TO_GET.get(k, 'the dataset named in the config')
                                  for k in kinds)) or 'the dataset named in the config'
    setting = ('\nThis is a small-dataset config: one setting moves every path, the environment '
               'variable MMVIT_SMALL_DATA=/path/to/small (the folder make_small_datasets.py '
               'wrote).' if 'small_data' in cfg else '')
    raise DatasetNotFoundError(
        f'dataset not found. Missing: {", ".join(missing)}.\n'
        f'Config keys that point there ({len(keys)}): {"; ".join(keys)}.\n'
        f'Get it: {how}; or point each of those keys elsewhere with --cfg-options.{setting}\n'
        f'{SMALL_DATA_HINT}')
