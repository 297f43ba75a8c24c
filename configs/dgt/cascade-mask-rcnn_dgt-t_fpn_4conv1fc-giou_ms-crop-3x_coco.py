# Cascade Mask R-CNN 3x + multi-scale crop, 4conv1fc bbox heads with GIoU loss, DGT-style tiny.
# DGT has no public code, weights or recipes: the backbone's hyper-parameters are this project's
# choice and no paper number is reproduced. mmdet has no Swin Cascade config; its ConvNeXt one is
# the in-tree template for this setting (heads, DETR-style multi-scale crop, 36 epochs, steps
# 27/33). Optimizer: the Swin protocol (AdamW lr 1e-4, wd 0.05). Drop path 0.2 (T) / 0.3 (S) /
# 0.4 (B).
_base_ = ['mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False, _delete_=True)

# ImageNet weights trained with configs/dgt/dgt-t_8xb128_in1k.py (none are published).
pretrained = 'checkpoints/dgt-t_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DGT',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# No weight decay on norms (LayerNorm and BatchNorm).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
