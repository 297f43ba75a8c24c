# Mask R-CNN 3x (36 epochs) + multi-scale crop with DilateFormer-T on COCO.
# Swin protocol of mmdet (DETR-style random resize/crop, AdamW lr 1e-4, wd 0.05, steps 27/33).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

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
    type='OptimWrapper',
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}, _delete_=True))
