# DGT-style tiny on ImageNet-1k with a DeiT-style recipe (no official recipe exists).
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
# DGT has no public code, weights or architecture table: the model's hyper-parameters are this
# project's choice and no paper number is reproduced (see configs/dgt/README.md).
# Recipe (DeiT / Swin as in mmpretrain): 8 GPUs x 128 images, AdamW lr 5e-4 x batch / 512 = 1e-3,
# wd 0.05 (none on norms, biases and 1-D parameters), 300 epochs: 5 linear warmup epochs from
# 1e-6, then cosine to 1e-5; RandAugment m9 mstd 0.5, Mixup 0.8 / CutMix 1.0, label smoothing 0.1,
# random erasing 0.25, gradient clipping at 5.0 (as mmpretrain's DeiT); drop path 0.1 (T) /
# 0.2 (S) / 0.3 (B). Evaluation: bicubic resize of the short side to 256, centre crop 224.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/guards.py'
]
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='DGT', arch='tiny', drop_path_rate=0.1, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

train_dataloader = dict(batch_size=128, num_workers=8)
val_dataloader = dict(batch_size=128, num_workers=8)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       _delete_=True),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop',
    max_epochs=300, val_interval=1)
# lr 1e-3 is for a batch of 1024: `--auto-scale-lr` rescales it for another batch size.
auto_scale_lr = dict(base_batch_size=1024)
