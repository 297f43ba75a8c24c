# Cascade Mask R-CNN 3x + multi-scale crop, 4conv1fc bbox heads with GIoU loss, DilateFormer-T.
# mmdet has no Swin Cascade config; its ConvNeXt one is the in-tree template for this setting
# (heads, DETR-style multi-scale crop, 36 epochs, steps 27/33). The optimizer is the Swin
# protocol (AdamW lr 1e-4, wd 0.05): mmdet's layer-decay constructor only handles ConvNeXt.
_base_ = ['mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False, _delete_=True)

pretrained = 'checkpoints/dilateformer-tiny_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DilateFormer',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[72, 144, 288, 576]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
