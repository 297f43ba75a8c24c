# Attention ablation, Mask R-CNN 1x: mmdet's Swin-T recipe unchanged (AdamW lr 1e-4, wd 0.05,
# 16 images, 1000-iter warmup, steps 8/11), so that variants differ in their attention only.
# The variant configs next to this file set the backbone's arch (generated, see README.md).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '../../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='AttentionPyramid',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    neck=dict(in_channels=[96, 192, 384, 768]))

# No weight decay on norms (LayerNorm and BatchNorm).
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., _delete_=True))
