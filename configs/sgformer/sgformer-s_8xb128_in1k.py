# SG-Former-S on ImageNet-1k with the official recipe (README + main.py defaults, timm 0.3.4):
# 8 GPUs x 128 images, AdamW lr 1e-3 (absolute, not scaled with the batch), wd 0.05; cosine over
# 300 epochs + 10 cooldown epochs at min lr 1e-5; 20 warmup epochs from 1e-6; RandAugment
# rand-m9-mstd0.5-inc1, mixup 0.8, cutmix 1.0, label smoothing 0.1, random erasing 0.25 (pixel
# mode); model EMA 0.99992 (the published accuracy is the EMA model's); AMP; no gradient clipping;
# drop path 0.1 (S) / 0.2 (M) / 0.4 (B). timm exempts 1-D parameters from weight decay (pos_embed
# and the merge weights keep it). Evaluation: bicubic resize to 248 (crop_pct 0.9), centre crop 224.
# Training crops: bicubic, from mmpretrain's Swin pipeline - a choice and a difference: the
# official code uses timm's --train-interpolation random (bilinear or bicubic, drawn per image),
# which mmpretrain's RandomResizedCrop does not offer.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/guards.py'
]
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='SGFormer', arch='small', drop_path_rate=0.1, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, num_workers=8)
val_dataloader = dict(batch_size=128, num_workers=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       _delete_=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-3, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300),
    # cooldown: the lr stays at eta_min for the last 10 epochs
]
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop',
    max_epochs=310, val_interval=1)
custom_hooks = [dict(type='EMAHook', momentum=8e-5, priority='ABOVE_NORMAL')]
# lr 1e-3 is absolute in the official recipe: keep it whatever the batch
auto_scale_lr = dict(base_batch_size=1024, enable=False)
