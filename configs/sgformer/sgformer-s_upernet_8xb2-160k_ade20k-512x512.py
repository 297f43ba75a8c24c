# UperNet, 160k iterations, 512x512 crops, ADE20K, SG-Former-S.
# SG-Former released no segmentation code or hyper-parameters; this is mmseg's Swin protocol
# (AdamW lr 6e-5, wd 0.01, 16 images, 1500-iter warmup then poly), inherited from its Swin-T config.
# Drop path 0.3 (S, M) / 0.4 (B) is this project's choice.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

# Official ImageNet weights (SG-Former-S.pth from the authors' Google Drive), or the output of
# tools/model_converters/sgformer2mmvit.py; an official file is converted on the fly, taking its
# state_dict_ema. They cannot be fetched by script: see configs/sgformer/README.md.
pretrained = 'checkpoints/sgformer-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SGFormer',
        arch='small',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

# No weight decay on norms (stage norms norm0-3, LN/GN inside) and on the position embedding.
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(
        custom_keys={'norm': dict(decay_mult=0.), 'pos_embed': dict(decay_mult=0.)},
        _delete_=True))
