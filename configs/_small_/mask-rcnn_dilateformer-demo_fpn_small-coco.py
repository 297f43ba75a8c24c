# Demo: Mask R-CNN with a small DilateFormer on the built-in COCO-format small dataset, on CPU.
#   python tools/misc/make_small_datasets.py data/small
#   python tools/train.py configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py
# Same detector and DilateFormer code as the COCO configs; widths, depths and head sizes are
# shrunk so that a few hundred iterations run in minutes on 2 CPU cores, from random weights.
_base_ = '../dilateformer/mask-rcnn_dilateformer-t_fpn_1x_coco.py'

# The built-in small datasets (`python tools/misc/make_small_datasets.py data/small` in the
# checkout): found next to this config's checkout from any working directory, or wherever
# the environment variable MMVIT_SMALL_DATA points (one setting for every path below).
small_data = '{{$MMVIT_SMALL_DATA:-}}'
small_data = '{{fileDirname}}/../../data/small' if small_data == '-' else small_data
data_root = small_data + '/small_coco/'
classes = ('square', 'circle', 'triangle')
metainfo = dict(classes=classes, palette=[(220, 40, 40), (40, 200, 60), (50, 70, 230)])
num_classes = len(classes)
neck_channels = 64

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=36, depths=(1, 1, 2, 1), num_heads=(3, 3, 6, 12)),
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(in_channels=[36, 72, 144, 288], out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(in_channels=neck_channels, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(in_channels=neck_channels, conv_out_channels=neck_channels,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# 64 images / 4 = 16 iterations per epoch
max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[13], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(interval=8),
    checkpoint=dict(interval=4, max_keep_ckpts=2))
auto_scale_lr = dict(enable=False, base_batch_size=4)
