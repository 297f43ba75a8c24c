# Attention ablation, UperNet 160k on ADE20K 512x512: mmseg's Swin-T recipe unchanged (AdamW
# lr 6e-5, wd 0.01, 16 images, 1500-iter warmup then poly). The variant configs next to this file
# set the backbone's arch (generated, see README.md).
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', '../../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='AttentionPyramid',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# No weight decay on norms (LayerNorm and BatchNorm).
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0., _delete_=True))
