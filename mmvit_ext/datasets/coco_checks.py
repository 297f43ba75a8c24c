"""Clear errors for COCO annotation files that mmdet would turn into a ``KeyError: 'mask'`` or
"need at least one array to concatenate" many steps later: an annotation with an empty or
degenerate ``segmentation`` (when the pipeline loads masks), and a training file in which no
image keeps an annotation. Installed on mmdet's ``CocoDataset`` when ``mmvit_ext`` is imported
and mmdet is present; the messages name the file, the annotation and image ids, and the fix."""
from typing import Optional

__all__ = ['CocoAnnotationError', 'install', 'segmentation_problem']


class CocoAnnotationError(ValueError):
    """A COCO annotation file that cannot train the configured model."""


def segmentation_problem(seg) -> Optional[str]:
    """What is wrong with a COCO ``segmentation`` value, or None."""
    if isinstance(seg, dict):
        if not seg or 'counts' not in seg or 'size' not in seg:
            return f'an RLE "segmentation" without "counts" and "size" ({seg!r:.60})'
        return None
    if not isinstance(seg, list) or not seg:
        return f'an empty "segmentation" ({seg!r})'
    for poly in seg:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            return (f'a polygon that is not 3 or more (x, y) points ({str(poly)[:60]}), '
                    f'in "segmentation"')
    return None


def _loads_masks(dataset) -> bool:
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
    return any(type(t).__name__ == 'LoadAnnotations' and getattr(t, 'with_mask', False)
               for t in transforms)


_FIX = ('Give it a polygon [[x1, y1, x2, y2, x3, y3, ...]] or an RLE {"counts", "size"}, or '
        'delete the annotation. For box-only data, drop the "segmentation" keys and train a '
        "detector without masks (LoadAnnotations(with_mask=False), no mask head).")


def install() -> None:
    try:
        from mmdet.datasets import CocoDataset
    except Exception:  # mmdet absent or broken: nothing to guard
        return
    if getattr(CocoDataset.parse_data_info, '_mmvit_checked', False):
        return
    parse_data_info, filter_data = CocoDataset.parse_data_info, CocoDataset.filter_data

    def checked_parse_data_info(self, raw_data_info):
        if _loads_masks(self):
            img = raw_data_info['raw_img_info']
            for ann in raw_data_info['raw_ann_info']:
                if ann.get('ignore_flag', 0) or 'segmentation' not in ann:
                    continue
                problem = segmentation_problem(ann['segmentation'])
                if problem:
                    raise CocoAnnotationError(
                        f'{self.ann_file}: annotation id {ann.get("id")} of image id '
                        f'{img.get("img_id", img.get("id"))} ({img.get("file_name")}) has '
                        f'{problem}, and the pipeline loads masks. {_FIX}')
        return parse_data_info(self, raw_data_info)

    def checked_filter_data(self):
        kept = filter_data(self)
        if self.test_mode or kept:
            return kept
        try:
            from mmengine.fileio import load
            raw = load(self.ann_file)
            images, anns = len(raw.get('images', [])), len(raw.get('annotations', []))
        except Exception:  # counting is a courtesy; the refusal stands without it
            images = anns = '?'
        raise CocoAnnotationError(
            f'{self.ann_file}: no training image is left ({images} images, {anns} annotations'
            f'{"" if anns else ": no image has an annotation"}; images without annotations, '
            'of other classes or smaller than filter_cfg.min_size are dropped). Check that the '
            'annotations\' category ids are among the file\'s "categories" and their names '
            f'match the classes of the config ({list(self.metainfo.get("classes", ()))[:5]}...), '
            'or that data_root / ann_file name the intended file.')

    checked_parse_data_info._mmvit_checked = True
    CocoDataset.parse_data_info = checked_parse_data_info
    CocoDataset.filter_data = checked_filter_data
