# Mask R-CNN 3x (36 epochs) + multi-scale crop with the DGT-style tiny backbone on COCO.
# DGT has no public code, weights, architecture table or detection recipe: the backbone's
# hyper-parameters are this project's choice, no paper number is reproduced, and the detector
# follows mmdet's Swin protocol (DETR-style random resize/crop, AdamW lr 1e-4, wd 0.05, steps
# 27/33), inherited from its Swin-T config. Drop path 0.2 (T) / 0.3 (S) / 0.4 (B).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

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
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., _delete_=True))
