# DilateFormer-T on ImageNet-1k with the official training recipe (the released code's
# dist_train.sh/main.py): 8 GPUs x 128 images, AdamW (lr 1e-3 per 512 images -> 2e-3 at 1024,
# wd 0.05, eps 1e-8), 300 epochs of timm's cosine stepped per epoch with the 10 warm-up epochs
# (from 1e-6) inside it, min lr 1e-5 (timm adds 10 cooldown epochs to its scheduler, which the
# official loop never reaches: it stops at --epochs 300), RandAugment m9-mstd0.5 (increasing),
# mixup 0.8, cutmix 1.0, label smoothing 0.1, random erasing 0.25, repeated augmentation,
# model EMA 0.99996 (kept and saved; validation scores the raw model, as the official code
# does), AMP, no gradient clipping, drop path 0.1 (the script's default: the paper's per-variant rates were not found).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/guards.py'
]
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='DilateFormer', arch='tiny', drop_path_rate=0.1, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=576,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

train_dataloader = dict(
    batch_size=128, num_workers=8,
    sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True))
val_dataloader = dict(batch_size=128, num_workers=8)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # timm exempts every 1-D parameter (norms, biases) from weight decay
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       _delete_=True))
param_scheduler = [
    dict(type='TimmCosineLR', t_initial=300, eta_min=1e-5, warmup_epochs=10, warmup_init=1e-6,
         by_epoch=True, begin=0, end=300)]
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop',
    max_epochs=300, val_interval=1)
# a choice: the average is saved as ema_state_dict and never scored (mmengine's 'EMAHook'
# would validate and save the average instead)
custom_hooks = [dict(type='SavedEMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
auto_scale_lr = dict(base_batch_size=1024)
