"""Fail fast, with directions, when a config's dataset is not on disk.

Without this, a missing COCO/ADE20K/ImageNet folder surfaces after model building as a bare
``FileNotFoundError`` from deep inside a dataset class.
"""
import os.path as osp
from typing import List, Sequence

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


class DatasetNotFoundError(FileNotFoundError):
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


def check_dataset_paths(cfg, phases: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Raise :class:`DatasetNotFoundError` naming the expected paths of the first missing dataset."""
    for phase in phases:
        loader = cfg.get(f'{phase}_dataloader')
        if not loader:
            continue
        for ds in _datasets(loader.get('dataset')):
            root = ds.get('data_root') or ''
            expected = []
            if root:
                expected.append(root)
            ann = _join(root, ds.get('ann_file'))
            if ann:
                expected.append(ann)
            prefix = ds.get('data_prefix') or {}
            if isinstance(prefix, dict):
                expected += [_join(root, p) for p in prefix.values() if p]
            elif isinstance(prefix, str):
                expected.append(_join(root, prefix))
            missing = [p for p in expected if p and not osp.exists(p)]
            if not missing:
                continue
            kind = ds.get('type', 'dataset')
            kind = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
            how = _HOW_TO_GET.get(kind.split('.')[-1], 'the dataset named in the config')
            raise DatasetNotFoundError(
                f'{phase}_dataloader: {kind} data not found. Missing: '
                f'{", ".join(osp.abspath(p) for p in missing)} '
                f'(data_root={root!r}, ann_file={ds.get("ann_file")!r}, '
                f'data_prefix={prefix!r}).\n'
                f'Get it: {how}; or point the config elsewhere, e.g. --cfg-options '
                f'{phase}_dataloader.dataset.data_root=/path/to/data/.\n{SMALL_DATA_HINT}')
