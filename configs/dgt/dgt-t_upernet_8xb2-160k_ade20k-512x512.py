# UperNet, 160k iterations, 512x512 crops, ADE20K, DGT-style tiny.
# DGT has no public code, weights or recipes: the backbone's hyper-parameters are this project's
# choice and no paper number is reproduced. This is mmseg's Swin protocol (AdamW lr 6e-5, wd 0.01,
# 16 images, 1500-iter warmup then poly), inherited from its Swin-T config. Drop path 0.2 (T) /
# 0.3 (S) / 0.4 (B).
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

# ImageNet weights trained with configs/dgt/dgt-t_8xb128_in1k.py (none are published).
pretrained = 'checkpoints/dgt-t_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DGT',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

# No weight decay on norms (LayerNorm and BatchNorm).
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., _delete_=True))
