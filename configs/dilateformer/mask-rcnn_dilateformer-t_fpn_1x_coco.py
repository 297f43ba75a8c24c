# Mask R-CNN 1x (12 epochs) with DilateFormer-T on COCO.
# The paper's detection hyper-parameters are not published (no official det code); this follows
# the Swin protocol of mmdet (AdamW lr 1e-4, wd 0.05, 16 images, 1000-iter warmup, steps 8/11),
# which is what the config inherits; only the backbone differs.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

# Official ImageNet weights (or the output of tools/model_converters/dilateformer2mmvit.py).
# They are not downloadable by script: see configs/dilateformer/README.md.
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

# No weight decay on norms and biases of norms (`norm` matches LN/BN names and norm0-3).
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}, _delete_=True))
