# Semantic FPN, 80k iterations, 512x512 crops, ADE20K, DilateFormer-S (paper: 47.1 mIoU, per a
# public transcription). The paper follows PVT's Semantic FPN protocol; DilateFormer's own
# segmentation code and notes were never released. From PVT v1 (Wang et al., ICCV 2021,
# Sec. 5.2, "Semantic segmentation"): mmseg's FPN neck and head, AdamW lr 1e-4, 80k iterations,
# batch 16, polynomial decay with power 0.9, random resize and 512x512 crops for training, short
# side 512 at test. Weight decay 1e-4: mmseg's own PVT-protocol configs (Twins PCPVT Semantic
# FPN, configs/twins/twins_pcpvt-s_fpn_fpnhead_8xb4-80k_ade20k-512x512.py). Poly decays to 0 here:
# mmseg's schedule_80k keeps eta_min 1e-4, which with lr 1e-4 would hold the lr constant.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/guards.py'
]
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

crop_size = (512, 512)
pretrained = 'checkpoints/dilateformer-small_in1k.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='DilateFormer',
        arch='small',
        drop_path_rate=0.2,  # our choice, as Twins' PVT-protocol Semantic FPN configs
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[72, 144, 288, 576], out_channels=256, num_outs=4),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=2)  # 8 GPUs x 2 = 16
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=80000, by_epoch=False)]
