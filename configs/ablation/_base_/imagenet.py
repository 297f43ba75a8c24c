# Attention ablation on ImageNet-1k: mmpretrain's Swin-T recipe unchanged (AdamW lr 1e-3 for 1024
# images, wd 0.05 without norms, biases and 1-D parameters, 300 epochs: 20 warmup epochs then
# cosine; RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random erasing 0.25, gradient
# clipping 5.0, drop path 0.2), so that variants differ in their attention only; 8 GPUs x 128
# images (Swin's 16 x 64). The variant configs next to this file set the backbone's arch and the
# head's input width (generated, see README.md).
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py', '../../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='AttentionPyramid',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(3, )))

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

train_cfg = dict(  # 'EpochBasedTrainLoop'
    _delete_=True, type='EpochBasedTrainLoop', max_epochs=300, val_interval=1)
