# Demo: UperNet with a small DilateFormer on the built-in ADE20K-format small dataset, on CPU.
#   python tools/misc/make_small_datasets.py data/small
#   python tools/train.py configs/_small_/dilateformer-demo_upernet_small-ade20k.py
# Four classes, all learned: background and three shapes whose colours do not give the class
# (ADE20K's folder layout and label files, read as a plain BaseSegDataset with its own names).
_base_ = '../dilateformer/dilateformer-t_upernet_8xb2-160k_ade20k-512x512.py'

# The built-in small datasets (`python tools/misc/make_small_datasets.py data/small` in the
# checkout): found next to this config's checkout from any working directory, or wherever
# the environment variable MMVIT_SMALL_DATA points (one setting for every path below).
small_data = '{{$MMVIT_SMALL_DATA:-}}'
small_data = '{{fileDirname}}/../../data/small' if small_data == '-' else small_data
data_root = small_data + '/small_ade'
classes = ('background', 'square', 'circle', 'triangle')
metainfo = dict(classes=classes,
                palette=[(120, 120, 120), (220, 40, 40), (40, 200, 60), (50, 70, 230)])
num_classes = len(classes)
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=36, depths=(1, 1, 2, 1), num_heads=(3, 3, 6, 12)),
        drop_path_rate=0.,
        init_cfg=None),
    decode_head=dict(in_channels=[36, 72, 144, 288], channels=64, norm_cfg=norm_cfg,
                     num_classes=num_classes),
    auxiliary_head=dict(in_channels=144, channels=32, norm_cfg=norm_cfg,
                        num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomResize', scale=(160, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                 img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
                 img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=200, val_interval=100)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=200, by_epoch=False),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=100, max_keep_ckpts=2))
