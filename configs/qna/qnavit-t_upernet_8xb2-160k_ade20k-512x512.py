# UperNet, 160k iterations, 512x512 crops, ADE20K, QnA-ViT-T.
# The QnA paper reports ImageNet only and its code has no segmentation part: this is mmseg's Swin
# protocol (AdamW lr 6e-5, wd 0.01, 16 images, 1500-iter warmup then poly), inherited from its
# Swin-T config. Drop path 0.1 (T, T-7x7) / 0.2 (S) / 0.3 (B) is this project's choice.
# Stage 4 uses global attention: at 512x512 its map is 16x16, which 7x7 windows without shift
# would cut into 9 padded windows that never mix. See configs/qna/README.md.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

# The official Flax checkpoint loads as is (converted on the fly), as does the output of
# tools/model_converters/qna2mmvit.py. See configs/qna/README.md.
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
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

# No weight decay on norms, relative position biases and QnA's per-offset attention scales.
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(
        custom_keys={'norm': dict(decay_mult=0.), 'rpe_bias': dict(decay_mult=0.),
                     'attn_scale': dict(decay_mult=0.)},
        _delete_=True))
