# Mask R-CNN 1x (12 epochs) with SG-Former-S on COCO.
# SG-Former released no detection code or hyper-parameters; this follows mmdet's Swin protocol
# (AdamW lr 1e-4, wd 0.05, 16 images, 1000-iter warmup, steps 8/11), which the config inherits,
# as the papers of its time did. Drop path 0.2 (S) / 0.3 (M) / 0.4 (B) is this project's choice.
# Inputs of any size work (e.g. 800x1333): see configs/sgformer/README.md for the padding design.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/guards.py']
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
