# QnA-ViT-T on ImageNet-1k with the official recipe (configs/imagenet_qna.py of the JAX code):
# batch 1024 (8 GPUs x 128), AdamW (0.9, 0.999, eps 1e-8), lr 5e-4 x batch / 256 = 2e-3, 300 epochs:
# linear warmup from 0 over 5 epochs (20 for B), then cosine to 0. Weight decay 0.05 on every
# parameter except the relative position biases and QnA's per-offset attention scales (norms,
# biases, queries and the key projection are decayed, as officially). No gradient clipping, no EMA.
# Mixed precision (the QnA core runs in fp32 anyway). Augmentation: Inception crop + flip,
# RandAugment (2 ops, magnitude 9, std 0.5, each op with p 0.5), colour jitter 0.3, random erasing
# 0.25, per batch Mixup 0.8 or CutMix 1.0, label smoothing 0.1. Evaluation: resize the short side
# to 256 (= the official 224/256 centre fraction) with bicubic, centre crop 224.
# Drop path 0.05 (T, T-7x7) / 0.2 (S) / 0.5 (B), official.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/guards.py'
]
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='QnAViT', arch='tiny', drop_path_rate=0.05, out_indices=(3, )),
    # the official head is LayerNorm -> average pool -> Dense; the LayerNorm is the backbone's
    # norm3, so a converted official classifier loads key for key
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128, num_workers=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        custom_keys={'rpe_bias': dict(decay_mult=0.), 'attn_scale': dict(decay_mult=0.)},
        _delete_=True),
    clip_grad=None)
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=warmup_epochs, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop',
    max_epochs=300, val_interval=1)
# The official lr is 5e-4 x batch / 256: `--auto-scale-lr` rescales 2e-3 for another batch size.
auto_scale_lr = dict(base_batch_size=1024)
