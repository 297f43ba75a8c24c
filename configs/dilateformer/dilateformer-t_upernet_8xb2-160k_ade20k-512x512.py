# UperNet, 160k iterations, 512x512 crops, ADE20K, DilateFormer-T.
# The paper's segmentation hyper-parameters are not published; this is mmseg's Swin protocol
# (AdamW lr 6e-5, wd 0.01, 16 images, 1500-iter warmup then poly), inherited from its Swin-T config.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', '../_base_/guards.py']
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

pretrained = 'checkpoints/dilateformer-tiny_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DilateFormer',
        arch='tiny',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[72, 144, 288, 576], num_classes=150),
    auxiliary_head=dict(in_channels=288, num_classes=150))

optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}, _delete_=True))
