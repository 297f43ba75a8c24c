"""Every shipped config builds its model, and the model takes one loss step on a small input."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmvit_ext.apis import build_model_from_cfg

from .conftest import REPO

# configs/_base_/ holds fragments (the guards), not configs of a model
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if osp.dirname(p) != osp.join(REPO, 'configs', '_base_'))
# the 39 ablation configs share one skeleton: tests/test_models/test_attention_pyramid.py builds
# each, checks its size and takes a detector loss step per variant; their bases are tested here
LOSS_STEP = [p for p in CONFIGS if '/ablation/' not in p or '/_base_/' in p]
_STEPPED = {}  # model dict -> the config whose loss step covered it in this run


def _build(cfg):
    assert cfg.model.backbone.get('init_cfg') is None or cfg.model.backbone.init_cfg.type == 'Pretrained'
    rcnn = cfg.model.get('train_cfg', {}).get('rcnn')
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn] if rcnn else []):
        stage.sampler.num = 64  # fewer sampled RoIs than the configs' 512: same heads, less CPU
    # shipped configs point at official ImageNet weights, which tests cannot download
    model, scope = build_model_from_cfg(cfg, drop_pretrained=True)
    model.init_weights()
    return model.train(), scope


def _det_batch(size):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, *size)] * 2, num_items=[2, 3],
                          num_classes=3, with_mask=True)


def _seg_batch(size, num_classes):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *size)))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, *size), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def _cls_batch(size, num_classes):
    from mmpretrain.structures import DataSample
    return dict(inputs=[torch.randint(0, 255, (3, *size), dtype=torch.uint8) for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i % num_classes) for i in range(2)])


@pytest.mark.parametrize('path', LOSS_STEP, ids=[osp.relpath(p, REPO) for p in LOSS_STEP])
def test_config_builds_and_takes_a_loss_step(path):
    cfg = Config.fromfile(path)
    assert 'mmvit_ext' in cfg.custom_imports['imports']
    # configs that differ only in data and schedule (1x / 3x, the short entry points) build the
    # same model: one loss step per distinct model dict in a run
    key = json.dumps(cfg.model.to_dict(), sort_keys=True, default=str)
    if key in _STEPPED:
        return
    _STEPPED[key] = path
    model, scope = _build(cfg)
    torch.manual_seed(0)
    if scope == 'mmdet':
        data = _det_batch((64, 96))
    elif scope == 'mmseg':
        model.data_preprocessor.size = (64, 64)  # the configs pad to their 512x512 crop
        data = _seg_batch((64, 64), cfg.model.decode_head.num_classes)
    else:
        data = _cls_batch((64, 64), cfg.model.head.num_classes)
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k and torch.is_tensor(v)) + sum(
        sum(x.sum() for x in v) for k, v in losses.items() if 'loss' in k and isinstance(v, list))
    assert torch.isfinite(total) and total > 0
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_model_index_lists_every_canonical_config():
    import yaml
    index = yaml.safe_load(open(osp.join(REPO, 'model-index.yml')))
    listed = set()
    for meta in index['Import']:
        for model in yaml.safe_load(open(osp.join(REPO, meta)))['Models']:
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
            assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
            listed.add(model['Config'])
    # canonical names have a hyphen; short entry points (mask_rcnn_coco.py...) do not
    canonical = {osp.relpath(p, REPO) for p in CONFIGS
                 if '/_small_/' not in p and '/_custom_/' not in p and '/_base_/' not in p
                 and '-' in osp.basename(p)}
    assert canonical == listed
