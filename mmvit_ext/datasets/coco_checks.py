"""``CheckedCocoDataset``: mmdet's ``CocoDataset`` that says what is wrong with an annotation file
instead of shifting labels, dropping boxes without a word or training on nothing. Selected with
the dataset ``type`` (the guard ``checked_coco`` puts it in the train, val and test loaders of
the project's configs); registered in mmdet's ``DATASETS`` when mmdet is installed.

* Classes of the config that the file spells otherwise or lists in another order are refused,
  listing both sides (mmdet would shift every label); so are annotations it cannot read (no
  ``bbox``, ...). See :mod:`.coco_file`.
* Unknown category ids, repeated image ids and boxes outside the image, negative, smaller than a
  pixel or not finite are dropped as mmdet drops them (non-finite ones by us: mmdet's checks
  let some through), with one warning that counts each kind and names the first ids.
* Image files that are missing, empty, truncated or text are named before training starts
  (``check_image_files=True``, local files); one that still fails to decode is named in one
  line when it is loaded.
* An annotation whose ``segmentation`` is empty, a polygon of fewer than 3 points or an RLE
  without ``counts``/``size`` is ignored, as mmdet's ``LoadAnnotations`` ignores degenerate
  polygons (an empty one would otherwise end in ``KeyError: 'mask'`` many steps later); one
  warning counts them and names the first ids.
* A training file in which no image keeps a usable box (none annotated, other classes, every box
  of zero width or height, or all images smaller than ``filter_cfg.min_size``) is refused, naming
  the file, the counts and the fix: mmdet would train with ``loss_bbox 0.0000``.
"""
from typing import List, Optional

from mmengine.logging import print_log

from ..errors import Refusal
from .coco_file import (CocoAnnotationError, check_annotation_keys, check_categories,
                        describe_dropped, dropped_annotations, finite_box)
from .image_files import decode_problem, describe_image_problems, image_files_problems

__all__ = ['CocoAnnotationError', 'segmentation_problem', 'CheckedCocoDataset']


def segmentation_problem(seg) -> Optional[str]:
    """What is wrong with a COCO ``segmentation`` value, or None."""
    if isinstance(seg, dict):
        if not seg or seg.get('counts') is None or seg.get('size') is None:
            return f'an RLE "segmentation" without "counts" and "size" ({seg!r:.60})'
        return None
    if not isinstance(seg, list) or not seg:
        return f'an empty "segmentation" ({seg!r})'
    if not any(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
        return f'no polygon of 3 or more (x, y) points ({str(seg)[:60]})'
    return None


def _loads_masks(dataset) -> bool:
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
    return any(type(t).__name__ == 'LoadAnnotations' and getattr(t, 'with_mask', False)
               for t in transforms)


# a zero-area polygon: what mmdet's LoadAnnotations puts in place of a degenerate one
_IGNORED_MASK = [[0.0] * 6]

try:
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
except Exception:  # noqa: BLE001  (mmdet absent or broken: nothing to register)
    CocoDataset = DATASETS = None

if CocoDataset is not None:

    @DATASETS.register_module()
    class CheckedCocoDataset(CocoDataset):
        """``CocoDataset`` with the checks of the module docstring."""

        def __init__(self, *args, check_image_files: bool = True, **kwargs):
            self.check_image_files = check_image_files
            super().__init__(*args, **kwargs)

        def load_data_list(self) -> List[dict]:
            self._ignored_segmentations: List[str] = []
            self._file_checked = False
            try:
                data_list = super().load_data_list()
            except (KeyError, TypeError, ValueError, AssertionError) as error:
                if isinstance(error, Refusal):
                    raise
                # pycocotools or mmdet met what the file lacks: say what, in one line
                self._check_file(self._read_file())
                raise
            if not self._file_checked:  # a file without images: nothing was parsed
                self._check_file(self._read_file())
            ignored = self._ignored_segmentations
            if ignored:
                print_log(
                    f'{self.ann_file}: {len(ignored)} annotation(s) with an unusable '
                    f'"segmentation" are ignored, as mmdet ignores degenerate polygons: '
                    f'{"; ".join(ignored[:3])}{" ..." if len(ignored) > 3 else ""}',
                    logger='current', level=30)
            return data_list

        def _read_file(self):
            from mmengine.fileio import load
            return load(self.ann_file, backend_args=self.backend_args)

        def _check_file(self, dataset) -> None:
            """The file-wide checks of :mod:`.coco_file`, once, on the parsed json."""
            self._file_checked = True
            check_categories(dataset.get('categories') or [], self.metainfo['classes'],
                             self.ann_file)
            check_annotation_keys(dataset, self.ann_file)
            dropped = dropped_annotations(dataset)
            if dropped:
                print_log(describe_dropped(dropped, self.ann_file), logger='current', level=30)

        def parse_data_info(self, raw_data_info):
            if not self._file_checked:  # the first image: the file is at hand in self.coco
                self._check_file(self.coco.dataset)
            raw_data_info = dict(raw_data_info, raw_ann_info=[
                ann for ann in raw_data_info['raw_ann_info'] if finite_box(ann)])
            data_info = super().parse_data_info(raw_data_info)
            if not _loads_masks(self):
                return data_info
            by_bbox = {}
            for ann in raw_data_info['raw_ann_info']:
                x, y, w, h = ann['bbox']
                by_bbox.setdefault((x, y, x + w, y + h), ann)
            for instance in data_info['instances']:
                ann = by_bbox.get(tuple(instance['bbox']), {})
                problem = segmentation_problem(instance.get('mask', ann.get('segmentation')))
                if problem:
                    self._ignored_segmentations.append(
                        f'annotation id {ann.get("id")} of image id {data_info["img_id"]} has '
                        f'{problem}')
                    instance['ignore_flag'] = 1
                    instance['mask'] = _IGNORED_MASK
            return data_info

        def _check_image_files(self, data_list: List[dict]) -> None:
            paths = [d['img_path'] for d in data_list]
            if not self.check_image_files or not paths:
                return
            if self.backend_args or any('://' in p for p in paths[:1]):
                print_log(f'{self.ann_file}: images are not local files; they are checked '
                          'when loaded', logger='current')
                return
            problems = image_files_problems(paths)
            if problems:
                raise CocoAnnotationError(
                    describe_image_problems(problems, len(set(paths)), self.ann_file))

        def prepare_data(self, idx):
            try:
                return super().prepare_data(idx)
            except Exception as error:  # noqa: BLE001  (re-raised unless the image is named)
                if isinstance(error, Refusal):
                    raise
                info = self.get_data_info(idx)
                path = info.get('img_path')
                problem = decode_problem(path) if isinstance(path, str) and \
                    '://' not in path else None
                if problem:
                    raise CocoAnnotationError(
                        f'{self.ann_file}: the image file of image id {info.get("img_id")}, '
                        f'{path}, {problem}. Restore it, or remove its entry from the '
                        'annotation file.') from error
                raise

        def filter_data(self) -> List[dict]:
            kept = super().filter_data()
            self._check_image_files(kept)  # only the images that will be loaded
            if self.test_mode:
                return kept
            usable = [d for d in kept
                      if any(not i.get('ignore_flag', 0) for i in d.get('instances', []))]
            if usable:
                return kept
            try:
                from mmengine.fileio import load
                raw = load(self.ann_file)
                images, anns = len(raw.get('images', [])), raw.get('annotations', [])
                degenerate = sum(1 for a in anns if len(a.get('bbox', ())) == 4
                                 and (a['bbox'][2] < 1 or a['bbox'][3] < 1))
                anns = len(anns)
            except Exception:  # noqa: BLE001  (counting is a courtesy; the refusal stands)
                images = anns = degenerate = '?'
            why = ('no image has an annotation' if anns == 0 else
                   f'{degenerate} of the {anns} boxes are smaller than 1x1 pixel'
                   if degenerate else 'no annotation is of a class of the config')
            raise CocoAnnotationError(
                f'{self.ann_file}: no training image keeps a usable box ({images} images, '
                f'{anns} annotations: {why}; images without annotations, of other classes, '
                'whose boxes are smaller than 1x1 pixel, or smaller than filter_cfg.min_size are '
                'dropped). Check that the boxes are [x, y, width, height] in pixels, that the '
                'annotations\' category ids are among the file\'s "categories" and their names '
                f'match the classes of the config ({list(self.metainfo.get("classes", ()))[:5]}'
                '...), or that data_root / ann_file name the intended file.')
