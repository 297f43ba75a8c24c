# Cascade Mask R-CNN 3x + multi-scale crop, 4conv1fc bbox heads with GIoU loss, QnA-ViT-T.
# mmdet has no Swin Cascade config; its ConvNeXt one is the in-tree template for this setting
# (heads, DETR-style multi-scale crop, 36 epochs, steps 27/33). Optimizer: the Swin protocol
# (AdamW lr 1e-4, wd 0.05). The QnA paper reports ImageNet only: no detection recipe exists.
# Stage 4 uses global attention (see mask-rcnn_qnavit-t_fpn_1x_coco.py and the README).
_base_ = ['mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False, _delete_=True)

# The official Flax checkpoint loads as is (converted on the fly), as does the output of
# tools/model_converters/qna2mmvit.py. See configs/qna/README.md.
pretrained = 'checkpoints/qnavit-t_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='QnAViT',
        arch='tiny',
        msa_modes=('window', 'window', 'window', 'global'),
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# No weight decay on norms, relative position biases and QnA's per-offset attention scales.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={'norm': dict(decay_mult=0.), 'rpe_bias': dict(decay_mult=0.),
                     'attn_scale': dict(decay_mult=0.)}))
