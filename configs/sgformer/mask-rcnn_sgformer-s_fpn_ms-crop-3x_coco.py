# Mask R-CNN 3x (36 epochs) + multi-scale crop with SG-Former-S on COCO.
# mmdet's Swin protocol (DETR-style random resize/crop, AdamW lr 1e-4, wd 0.05, steps 27/33);
# the paper's own det hyper-parameters are not published.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

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
    type='OptimWrapper',
    paramwise_cfg=dict(
        custom_keys={'norm': dict(decay_mult=0.), 'pos_embed': dict(decay_mult=0.)},
        _delete_=True))
