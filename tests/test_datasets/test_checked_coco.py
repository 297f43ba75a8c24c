"""COCO labels never shift silently, nothing is dropped without a word, and a broken image file
is named before training (issue 29, item 3). Each case is first shown to go wrong with mmdet's
own ``CocoDataset``, then refused or counted by ``CheckedCocoDataset``."""
import json
import math
import os.path as osp
import shutil
import sys

import pytest

from mmvit_ext.datasets.coco_file import CocoAnnotationError
from mmvit_ext.errors import refusal_message

from ..conftest import REPO
from ..test_refusals import _data_options, _logged, _one_line_error, _run

CLASSES = ('square', 'circle', 'triangle')  # the small set's categories 1, 2, 3 in this order
DET_CFG = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'


@pytest.fixture
def coco_copy(small_data, tmp_path):
    """A writable copy of the small COCO set (train images and annotations)."""
    root = tmp_path / 'coco'
    shutil.copytree(osp.join(small_data['coco'], 'train'), root / 'train')
    shutil.copytree(osp.join(small_data['coco'], 'annotations'), root / 'annotations')
    return root


def _edit(root, edit):
    path = root / 'annotations' / 'instances_train.json'
    ann = json.loads(path.read_text())
    edit(ann)
    path.write_text(json.dumps(ann))
    return ann, str(path)


def _dataset(root, type_='CheckedCocoDataset', classes=CLASSES, **kwargs):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    return DATASETS.build(dict(
        type=type_, data_root=str(root), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=classes),
        filter_cfg=dict(filter_empty_gt=True), pipeline=[
            dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)],
        **kwargs))


def _labels_by_annotation(dataset):
    """{(image id, rounded box): label} over the whole dataset."""
    out = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        for inst in info['instances']:
            out[(info['img_id'], tuple(round(v, 1) for v in inst['bbox']))] = inst['bbox_label']
    return out


_CATEGORY_EDITS = {
    'a name spelt otherwise': (lambda ann: ann['categories'][0].update(name='Square'),
                               r"\('square'\) missing \(the file has 'Square'\); mmdet would "
                               r"shift every label"),
    'another order': (lambda ann: ann['categories'].reverse(),
                      r"the config lists the classes \('square', 'circle', 'triangle'\), the "
                      r"file \('triangle', 'circle', 'square'\).*classes=\('triangle', "
                      r"'circle', 'square'\)"),
    'a name twice': (lambda ann: ann['categories'].insert(1, dict(id=9, name='circle')),
                     r"names the categories \('circle'\) more than once"),
}


@pytest.mark.parametrize('case', sorted(_CATEGORY_EDITS))
def test_class_names_that_would_shift_labels_are_refused_listing_both_sides(case, coco_copy):
    edit, message = _CATEGORY_EDITS[case]
    before = _labels_by_annotation(_dataset(coco_copy, type_='CocoDataset'))
    _edit(coco_copy, edit)
    plain = _labels_by_annotation(_dataset(coco_copy, type_='CocoDataset'))
    assert plain != before  # what mmdet does without a word: labels move or vanish
    with pytest.raises(CocoAnnotationError, match=message):
        _dataset(coco_copy)
    if case == 'a name spelt otherwise':
        with pytest.raises(CocoAnnotationError, match=r"\('square', 'circle', 'triangle'\) are "
                           r"not all categories of the file \('Square', 'circle', 'triangle'\)"):
            _dataset(coco_copy)


def test_the_same_names_in_the_same_order_load_unchanged(coco_copy):
    """A file that needs no word gets none, and its labels are mmdet's."""
    with _logged() as log:
        checked = _dataset(coco_copy)
    assert 'without a word' not in log.getvalue()
    assert _labels_by_annotation(checked) == _labels_by_annotation(
        _dataset(coco_copy, type_='CocoDataset'))


def test_what_mmdet_drops_is_counted_in_one_warning(coco_copy):
    def edit(ann):
        images = {img['id']: img for img in ann['images']}
        a = ann['annotations']
        a[0]['category_id'] = 99
        a[1]['bbox'][0] = images[a[1]['image_id']]['width'] + 5  # right of the image
        a[2]['bbox'][2] = -a[2]['bbox'][2]
        a[3]['bbox'][1] = float('nan')
        a[4]['bbox'][3] = 0.5
        ann['images'].append(dict(ann['images'][1], file_name=ann['images'][2]['file_name']))

    ann, _ = _edit(coco_copy, edit)
    a = ann['annotations']
    with _logged() as log:
        dataset = _dataset(coco_copy)
    lines = [line for line in log.getvalue().splitlines() if 'without a word' in line]
    assert len(lines) == 1, log.getvalue()
    line = lines[0]
    for expected in (f'1 repeated image ids (pycocotools keeps the last entry, with the '
                     f'annotations of all) (image id {ann["images"][1]["id"]} x2)',
                     f'1 unknown category ids (id {a[0]["id"]} (category_id 99))',
                     f'1 boxes outside the image (id {a[1]["id"]} ',
                     f'1 boxes of negative width or height (id {a[2]["id"]} ',
                     f'1 boxes that are not finite (NaN/Inf) (id {a[3]["id"]})',
                     f'1 boxes smaller than 1 pixel (id {a[4]["id"]} '):
        assert expected in line, (expected, line)
    boxes = [v for i in range(len(dataset))
             for inst in dataset.get_data_info(i)['instances'] for v in inst['bbox']]
    assert boxes and all(math.isfinite(v) for v in boxes)


@pytest.mark.parametrize('missing', ['bbox', 'image_id', 'area'])
def test_an_annotation_mmdet_cannot_read_is_named(missing, coco_copy):
    ann, _ = _edit(coco_copy, lambda ann: ann['annotations'][5].pop(missing))
    with pytest.raises(KeyError):  # mmdet / pycocotools: a bare KeyError
        _dataset(coco_copy, type_='CocoDataset')
    bad = ann['annotations'][5]
    with pytest.raises(CocoAnnotationError, match=rf"1 of the {len(ann['annotations'])} "
                       rf"annotations cannot be read: annotation id {bad['id']} .*has no "
                       rf"'{missing}'"):
        _dataset(coco_copy)


def _break(path, how):
    data = open(path, 'rb').read()
    content = {'missing': None, 'empty': b'', 'truncated': data[:len(data) // 2],
               'text': b'<html>404 Not Found</html>\n'}[how]
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)


@pytest.mark.parametrize('how,problem', [
    ('missing', 'is missing'), ('empty', r'is empty \(0 bytes\)'),
    ('truncated', r'is a truncated JPEG \(\d+ bytes, no end-of-image marker\)'),
    ('text', r"is a text file, not an image \(starts with b'<html>404")])
def test_a_broken_image_file_is_named_before_training(how, problem, coco_copy):
    ann = json.loads((coco_copy / 'annotations' / 'instances_train.json').read_text())
    name = ann['images'][3]['file_name']
    _break(coco_copy / 'train' / name, how)
    with pytest.raises(CocoAnnotationError, match=rf'1 of the 8 image files cannot train or be '
                       rf'tested: .*train/{name} {problem}'):
        _dataset(coco_copy)
    _dataset(coco_copy, check_image_files=False)  # the check can be turned off


def test_an_image_that_passes_the_scan_but_cannot_be_decoded_is_named_in_one_line(coco_copy):
    """A JPEG with its start and end markers and nothing decodable between: named when it is
    loaded, also from a DataLoader worker (the refusal crosses the process boundary)."""
    import torch
    ann = json.loads((coco_copy / 'annotations' / 'instances_train.json').read_text())
    name = ann['images'][0]['file_name']
    (coco_copy / 'train' / name).write_bytes(b'\xff\xd8\xff\xe0' + b'\x00' * 64 + b'\xff\xd9')
    dataset = _dataset(coco_copy)
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path']
                 .endswith(name))
    with pytest.raises(CocoAnnotationError, match=rf'image id {ann["images"][0]["id"]}, '
                       rf'.*train/{name}, cannot be decoded'):
        dataset[index]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, [index]),
                                         num_workers=1, collate_fn=lambda batch: batch)
    with pytest.raises(CocoAnnotationError) as error:
        next(iter(loader))
    message = refusal_message(error.value)
    assert message.startswith(f'{dataset.ann_file}: the image file of image id') and \
        'Traceback' not in message and 'worker' not in message, message


def test_tools_train_refuses_a_shifted_class_in_one_line_before_training(
        small_data, coco_copy, tmp_path):
    _, path = _edit(coco_copy, lambda ann: ann['categories'][1].update(name='Circle'))
    code, out = _run([sys.executable, 'tools/train.py', DET_CFG, '--work-dir',
                      str(tmp_path / 'w'), '--cfg-options', *_data_options(small_data),
                      f'train_dataloader.dataset.ann_file={path}'], timeout=600)
    _one_line_error(code, out, r"instances_train\.json: the config's classes .* \('circle'\) "
                    r"missing \(the file has 'Circle'\)")
    assert 'Epoch(train)' not in out


def test_the_guard_checks_the_val_and_test_sets_too():
    import copy

    from mmengine.config import Config

    from mmvit_ext.engine.guarded_components import select_guarded_components
    from mmvit_ext.engine.runner import configured_guards
    cfg = Config.fromfile(osp.join(REPO, 'configs/dilateformer/mask-rcnn_dilateformer-t_fpn_1x_'
                                         'coco.py'))
    for guards_on in (True, False):
        chosen = copy.deepcopy(cfg)
        chosen.merge_from_dict({'guards.checked_coco': guards_on})
        select_guarded_components(chosen, configured_guards(chosen))
        expected = 'CheckedCocoDataset' if guards_on else 'CocoDataset'
        for loader in ('train', 'val', 'test'):
            assert chosen[f'{loader}_dataloader'].dataset.type == expected, loader
