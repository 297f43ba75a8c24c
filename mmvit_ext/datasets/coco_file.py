"""What a COCO annotation file (the parsed json) does to the labels and boxes mmdet trains on.

Pure functions over the file's dict, no mmdet: :class:`CheckedCocoDataset` calls them.

* :func:`check_categories` -- mmdet numbers the config's classes in the order the file lists
  them and skips names the file does not have, so ``'square'`` vs ``'Square'`` or another order
  shifts every label without a word. Refused, listing both sides.
* :func:`check_annotation_keys` -- an annotation without ``bbox`` (or ``id``, ``image_id``,
  ``category_id``, ``area``) ends in a ``KeyError`` inside mmdet or pycocotools; a repeated
  annotation id in an assert. Refused, naming the first ones.
* :func:`dropped_annotations` -- what mmdet drops without a word (unknown category ids, boxes
  outside the image, negative, smaller than a pixel or not finite, zero area, repeated image
  ids), counted for one warning.
"""
import math
from collections import Counter
from typing import Dict, List, Mapping, Sequence

from ..errors import Refusal

__all__ = ['CocoAnnotationError', 'check_categories', 'check_annotation_keys',
           'dropped_annotations', 'describe_dropped', 'finite_box']


class CocoAnnotationError(Refusal, ValueError):
    """A COCO annotation file that cannot train the configured model."""


def _names(names: Sequence[str], n: int = 8) -> str:
    shown = ', '.join(repr(x) for x in list(names)[:n])
    return f'({shown}{", ..." if len(names) > n else ""})'


def check_categories(categories: Sequence[Mapping], classes: Sequence[str], source: str) -> None:
    """Refuse unless every config class is exactly one of the file's category names, listed in
    the config's order (mmdet gives label i to the i-th of them in the file's order)."""
    file_names = [str(c.get('name')) for c in categories if isinstance(c, Mapping)]
    counts = Counter(file_names)
    missing = [c for c in classes if c not in counts]
    repeated = [c for c in classes if counts.get(c, 0) > 1]
    fix = (' Set metainfo=dict(classes=...) to the names of the categories to train, spelt as '
           'the file spells them, in the file\'s order.')
    if missing:
        near = {c: n for c in missing for n in file_names if n.lower() == c.lower()}
        hint = ''.join(f' (the file has {n!r})' for n in near.values()) if near else ''
        raise CocoAnnotationError(
            f'{source}: the config\'s classes {_names(classes)} are not all categories of the '
            f'file {_names(file_names)}: {_names(missing)} missing{hint}; mmdet would shift '
            'every label after the first missing one.' + fix)
    if repeated:
        raise CocoAnnotationError(
            f'{source}: the file names the categories {_names(repeated)} more than once '
            f'(categories {_names(file_names)}); mmdet would give each a label of its own and '
            'shift the rest. Merge them into one category id.')
    in_file_order = [n for n in file_names if n in set(classes)]
    if in_file_order != list(classes):
        raise CocoAnnotationError(
            f'{source}: the config lists the classes {_names(classes)}, the file '
            f'{_names(in_file_order)}; mmdet numbers them in the file\'s order, so every '
            'label would carry another class\'s name (in logs, per-class AP, drawings and '
            f'exports). List them in the file\'s order: classes={tuple(in_file_order)!r}.')


_REQUIRED = ('id', 'image_id', 'category_id', 'bbox', 'area')


def check_annotation_keys(dataset: Mapping, source: str) -> None:
    """Refuse annotations that mmdet or pycocotools cannot read (a missing key, a ``bbox`` that
    is not 4 numbers, a repeated annotation id), naming the first ones."""
    annotations = dataset.get('annotations') or []
    bad: List[str] = []
    for ann in annotations:
        if not isinstance(ann, Mapping):
            bad.append(f'an entry that is {type(ann).__name__}, not an object')
            continue
        where = f'annotation id {ann.get("id")!r} of image id {ann.get("image_id")!r}'
        lacks = [k for k in _REQUIRED if k not in ann]
        if lacks:
            bad.append(f'{where} has no {", ".join(repr(k) for k in lacks)}')
        elif not _is_box(ann['bbox']):
            bad.append(f'{where} has "bbox" {ann["bbox"]!r:.60}, not [x, y, width, height]')
        elif not _is_number(ann['area']):
            bad.append(f'{where} has "area" {ann["area"]!r:.60}, not a number')
    if bad:
        raise CocoAnnotationError(
            f'{source}: {len(bad)} of the {len(annotations)} annotations cannot be read: '
            f'{"; ".join(bad[:3])}{" ..." if len(bad) > 3 else ""}. Every annotation needs '
            '"id", "image_id", "category_id", "bbox" ([x, y, width, height] in pixels) and '
            '"area".')
    ids = Counter(ann['id'] for ann in annotations)
    repeated = [i for i, n in ids.items() if n > 1]
    if repeated:
        raise CocoAnnotationError(
            f'{source}: {len(repeated)} annotation id(s) occur more than once (first: '
            f'{repeated[:5]}); each annotation needs its own id.')


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_box(box) -> bool:
    return isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)


def finite_box(ann: Mapping) -> bool:
    return all(math.isfinite(v) for v in ann['bbox'])


def dropped_annotations(dataset: Mapping) -> Dict[str, List[str]]:
    """What mmdet drops without a word, by kind: the first few ids of each (and the count,
    as the list's length). Call after :func:`check_annotation_keys`."""
    images = dataset.get('images') or []
    image_ids = Counter(img.get('id') for img in images if isinstance(img, Mapping))
    sizes = {img.get('id'): (img.get('width'), img.get('height'))
             for img in images if isinstance(img, Mapping)}
    known = {c.get('id') for c in dataset.get('categories') or () if isinstance(c, Mapping)}
    dropped: Dict[str, List[str]] = {}

    def add(kind, text):
        dropped.setdefault(kind, []).append(text)

    for image_id, n in image_ids.items():
        if n > 1:
            add('repeated image ids (pycocotools keeps the last entry, with the annotations of '
                'all)', f'image id {image_id!r} x{n}')
    for ann in dataset.get('annotations') or ():
        if ann.get('ignore', False):
            continue
        name = f'id {ann["id"]!r}'
        x, y, w, h = ann['bbox']
        width, height = sizes.get(ann['image_id'], (None, None))
        if ann['category_id'] not in known:
            add('unknown category ids', f'{name} (category_id {ann["category_id"]!r})')
        elif not finite_box(ann):
            add('boxes that are not finite (NaN/Inf)', name)
        elif w < 0 or h < 0:
            add('boxes of negative width or height', f'{name} ({w}x{h})')
        elif w < 1 or h < 1:
            add('boxes smaller than 1 pixel', f'{name} ({w}x{h})')
        elif isinstance(width, (int, float)) and isinstance(height, (int, float)) and (
                min(x + w, width) <= max(x, 0) or min(y + h, height) <= max(y, 0)):
            add('boxes outside the image', f'{name} ([{x}, {y}, {w}, {h}] in {width}x{height})')
        elif not ann['area'] > 0:
            add('annotations of zero "area"', f'{name} (area {ann["area"]!r})')
    return dropped


def describe_dropped(dropped: Mapping[str, List[str]], source: str) -> str:
    """One line: each kind with its count and first ids."""
    parts = [f'{len(items)} {kind} ({"; ".join(items[:3])}{" ..." if len(items) > 3 else ""})'
             for kind, items in dropped.items()]
    return (f'{source}: mmdet drops these annotations and images without a word: ' +
            ', '.join(parts) + '. Fix the file if they should train.')
