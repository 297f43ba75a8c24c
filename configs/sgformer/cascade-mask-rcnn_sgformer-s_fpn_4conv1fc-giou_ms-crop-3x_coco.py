# Cascade Mask R-CNN 3x + multi-scale crop, 4conv1fc bbox heads with GIoU loss, SG-Former-S.
# mmdet has no Swin Cascade config; its ConvNeXt one is the in-tree template for this setting
# (heads, DETR-style multi-scale crop, 36 epochs, steps 27/33). Optimizer: the Swin protocol
# (AdamW lr 1e-4, wd 0.05). The paper's own det hyper-parameters are not published.
_base_ = ['mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False, _delete_=True)

# Official ImageNet weights (SG-Former-S.pth from the authors' Google Drive), or the output of
# tools/model_converters/sgformer2mmvit.py; an official file is converted on the fly, taking its
# state_dict_ema. They cannot be fetched by script: see configs/sgformer/README.md.
pretrained = 'checkpoints/sgformer-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SGFormer',
        arch='small',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# No weight decay on norms (stage norms norm0-3, LN/GN inside) and on the position embedding.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={'norm': dict(decay_mult=0.), 'pos_embed': dict(decay_mult=0.)}))
