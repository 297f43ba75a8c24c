# Mask R-CNN 1x (12 epochs) with QnA-ViT-T on COCO.
# The QnA paper reports ImageNet only and its code has no detection part: this follows mmdet's
# Swin protocol (AdamW lr 1e-4, wd 0.05, 16 images, 1000-iter warmup, steps 8/11), which the config
# inherits. Drop path 0.1 (T, T-7x7) / 0.2 (S) / 0.3 (B) is this project's choice.
# Stage 4 uses global attention ('global' in msa_modes): with the official 7x7 windows and no
# shift, stage 4 would not mix between windows at all at 800x1333. Where stage 4 is one window
# (224x224 input) both modes are the same network. See configs/qna/README.md.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

# The official Flax checkpoint (checkpoint_<step>, from the authors' Google Drive) loads as is,
# converted on the fly; so does the output of tools/model_converters/qna2mmvit.py. Weights cannot
# be fetched by script: see configs/qna/README.md.
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

# No weight decay on norms, relative position biases and QnA's per-offset attention scales
# (the official ImageNet recipe exempts the last two).
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(
        custom_keys={'norm': dict(decay_mult=0.), 'rpe_bias': dict(decay_mult=0.),
                     'attn_scale': dict(decay_mult=0.)},
        _delete_=True))
