"""A plugin, not a patch: importing mmvit_ext changes nothing of the frameworks, and mmdet's own
models and configs behave exactly as without it, in the same process too."""
import json
import os.path as osp
import re
import subprocess
import sys


from .conftest import REPO, run_env

_SNAPSHOT = r'''
import importlib, json, sys
import torch
MODULES = ['mmengine.runner', 'mmengine.runner.loops', 'mmengine.runner.checkpoint',
           'mmengine.model', 'mmengine.model.base_model.base_model', 'mmengine.infer',
           'mmengine.optim', 'mmengine.hooks', 'mmengine.config', 'mmengine.registry',
           'mmengine.dataset', 'mmcv.transforms', 'mmdet.datasets', 'mmdet.datasets.coco',
           'mmdet.apis', 'mmdet.models', 'mmseg.apis', 'mmseg.models', 'mmpretrain.apis',
           'mmpretrain.apis.model', 'torch', 'torch.serialization', 'torch.hub', 'torch.nn',
           'torch.nn.modules.module', 'torch.optim']
for m in MODULES:
    importlib.import_module(m)
from mmengine.runner.checkpoint import CheckpointLoader

def snapshot():
    out = {'sys.excepthook': id(sys.excepthook)}
    for m in MODULES:
        for name, obj in list(vars(sys.modules[m]).items()):
            out[f'{m}.{name}'] = id(obj)
            if isinstance(obj, type):
                for attr, value in list(vars(obj).items()):
                    out[f'{m}.{name}.{attr}'] = id(value)
    return out

before = snapshot()
schemes = dict(CheckpointLoader._schemes)
import mmvit_ext  # noqa
after = snapshot()
# mmengine's register_scheme rebuilds CheckpointLoader._schemes: the documented exception,
# compared loader by loader below
changed = sorted(k for k in before if after.get(k) != before[k]
                 and not k.endswith('CheckpointLoader._schemes'))
new = sorted(k for k in after if k not in before and not k.startswith(('torch.ops', 'torch.classes')))
schemes_changed = sorted(k for k in CheckpointLoader._schemes
                         if CheckpointLoader._schemes[k] is not schemes.get(k))
print(json.dumps(dict(changed=changed, new=new, schemes=schemes_changed,
                      torch=torch.__version__)))
'''


def test_import_changes_no_attribute_of_the_frameworks():
    proc = subprocess.run([sys.executable, '-c', _SNAPSHOT], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['changed'] == [], result['changed']
    # attributes that appear: only submodules imported on the way (no new function or class
    # put into a framework module)
    assert all(k.count('.') >= 1 for k in result['new'])
    for key in result['new']:
        module, name = key.rsplit('.', 1)
        assert f'{module}.{name}' in sys.modules or name.startswith('_') or \
            name in ('datasets', 'models', 'apis'), key
    # the documented exception: how checkpoints are unpickled (the local loader and the URL
    # schemes, on every torch)
    urls = ['http://', 'https://', 'mmcls://', 'modelzoo://', 'open-mmlab://', 'openmmlab://',
            'torchvision://']
    assert result['schemes'] == sorted(urls + [''])


_PLAIN_MMDET = '''
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
{imports}
data_root = {root!r}
classes = ('square', 'circle', 'triangle')
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes={num_classes}),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32, num_classes={num_classes})))
pipeline = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='Resize', scale=(160, 128), keep_ratio=True), dict(type='PackDetInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(160, 128), keep_ratio=True),
                 dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                 dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                                       'img_shape', 'scale_factor'))]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=pipeline))
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json', metric=['bbox'])
val_dataloader = val_cfg = val_evaluator = None
train_cfg = dict(max_epochs=1, val_interval=10)
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
load_from = {load_from!r}
'''


def _mmdet_tool(name):
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', f'{name}.py')


def _run_mmdet(tmp_path, root, tag, plugin, load_from=None, num_classes=3, test_ckpt=None):
    imports = ("custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)"
               if plugin else '')
    config = tmp_path / f'{tag}.py'
    config.write_text(_PLAIN_MMDET.format(imports=imports, root=root + '/',
                                          num_classes=num_classes, load_from=load_from))
    work = tmp_path / tag
    if test_ckpt:
        cmd = [sys.executable, _mmdet_tool('test'), str(config), test_ckpt, '--work-dir', str(work)]
    else:
        cmd = [sys.executable, _mmdet_tool('train'), str(config), '--work-dir', str(work)]
    env = run_env()
    if not plugin:
        # without the plugin, mmengine 0.10 cannot load its own checkpoints on torch >= 2.6
        # (weights_only); mmdet users set this variable, which the plugin makes unnecessary
        env['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    logs = sorted(work.glob('*/vis_data/scalars.json')) if not test_ckpt else \
        sorted(work.glob('*/*.json'))
    lines = [json.loads(line) for line in logs[-1].read_text().splitlines()]
    return work, [{k: v for k, v in line.items() if k.startswith(('loss', 'coco'))}
                  for line in lines], proc.stdout + proc.stderr


def test_plain_mmdet_model_trains_tests_and_finetunes_the_same_with_the_plugin(small_data,
                                                                              tmp_path):
    """mmdet's own tools, a ResNet-18 Mask R-CNN on the small set: with and without
    ``custom_imports=['mmvit_ext']`` the losses, the evaluation and mmdet's fine-tuning flow
    (``load_from`` a checkpoint with another ``num_classes``) are identical."""
    root = small_data['coco']
    results = {}
    for plugin in (False, True):
        tag = 'plugin' if plugin else 'plain'
        work, train_log, _ = _run_mmdet(tmp_path, root, tag, plugin)
        ckpt = str(work / 'epoch_1.pth')
        _, test_log, _ = _run_mmdet(tmp_path, root, tag + '_test', plugin, test_ckpt=ckpt)
        # mmdet's documented fine-tuning: another number of classes, the heads re-initialised
        _, tune_log, out = _run_mmdet(tmp_path, root, tag + '_tune', plugin, load_from=ckpt,
                                      num_classes=5)
        assert 'size mismatch' in out or 'The model and loaded state dict do not match' in out
        results[plugin] = (train_log, test_log, tune_log)
    assert results[True] == results[False]
    assert results[True][0] and results[True][2] and results[True][1]


def test_our_configs_finetune_from_a_checkpoint_with_other_heads(small_data, tmp_path):
    """load_from a detector checkpoint whose heads have another num_classes trains, and says
    which keys it skipped; a checkpoint whose backbone does not fit is refused (in
    test_refusals)."""
    import torch
    from mmengine.config import Config

    from mmvit_ext.apis import build_model_from_cfg
    config = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.roi_head.bbox_head.num_classes = cfg.model.roi_head.mask_head.num_classes = 5
    model, _ = build_model_from_cfg(cfg)
    ckpt = tmp_path / 'five_classes.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    root = small_data['coco'] + '/'
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', config, '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', f'load_from={ckpt}', 'train_cfg.max_epochs=1',
         'train_dataloader.dataset.indices=4', f'train_dataloader.dataset.data_root={root}',
         f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
         f'val_evaluator.ann_file={root}annotations/instances_val.json',
         f'test_evaluator.ann_file={root}annotations/instances_val.json'],
        cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r'loading it for fine-tuning; the parts outside the backbone differ from '
                     r'the config: \d+ of another shape \(roi_head\.bbox_head\.fc_cls\.bias', out)
    assert osp.isfile(tmp_path / 'w' / 'epoch_1.pth')



