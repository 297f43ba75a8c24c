# Demo: ImageNet-style classification with a small DilateFormer on the built-in small dataset.
#   python tools/misc/make_small_datasets.py data/small
#   python tools/train.py configs/_small_/dilateformer-demo_small-imagenet.py
_base_ = '../dilateformer/dilateformer-t_8xb128_in1k.py'

# The built-in small datasets (`python tools/misc/make_small_datasets.py data/small` in the
# checkout): found next to this config's checkout from any working directory, or wherever
# the environment variable MMVIT_SMALL_DATA points (one setting for every path below).
small_data = '{{$MMVIT_SMALL_DATA:-}}'
small_data = '{{fileDirname}}/../../data/small' if small_data == '-' else small_data
data_root = small_data + '/small_imagenet'
metainfo = dict(classes=('square', 'circle', 'triangle'))  # not ImageNet's names
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=36, depths=(1, 1, 2, 1),
                            num_heads=(3, 3, 6, 12)), drop_path_rate=0.),
    head=dict(num_classes=3, in_channels=288),
    train_cfg=dict(augments=None, _delete_=True))
data_preprocessor = dict(num_classes=3)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
    dataset=dict(data_root=data_root, split='', ann_file='meta/train.txt', metainfo=metainfo,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, split='', ann_file='meta/val.txt', metainfo=metainfo,
                 data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))  # fp32 on the CPU
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=10)]
train_cfg = dict(max_epochs=10, val_interval=5)
custom_hooks = []
default_hooks = dict(logger=dict(interval=2), checkpoint=dict(interval=5, max_keep_ckpts=2))
