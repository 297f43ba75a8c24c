# Attention ablation on ImageNet-1k: the DeiT / Swin recipe of mmpretrain (8 GPUs x 128 images,
# AdamW lr 1e-3 for 1024 images, wd 0.05 without norms, biases and 1-D parameters, 300 epochs:
# 5 warmup epochs then cosine; RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random
# erasing 0.25, gradient clipping 5.0), drop path 0.1. The variant configs next to this file set
# the backbone's arch and the head's input width (generated, see README.md).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='AttentionPyramid', arch='tiny', drop_path_rate=0.1, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
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
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
# lr 1e-3 is for a batch of 1024: `--auto-scale-lr` rescales it for another batch size.
auto_scale_lr = dict(base_batch_size=1024)
