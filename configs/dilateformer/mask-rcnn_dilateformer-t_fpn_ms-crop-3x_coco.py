# Mask R-CNN 3x (36 epochs) + multi-scale crop with DilateFormer-T on COCO.
# Swin protocol of mmdet (DETR-style random resize/crop, AdamW lr 1e-4, wd 0.05, steps 27/33).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['mmvit_ext'], allow_failed_imports=False)

pretrained = 'checkpoints/dilateformer-tiny_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DilateFormer',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[72, 144, 288, 576]))

optim_wrapper = dict(
    type='FiniteOptimWrapper',  # 'OptimWrapper'
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}, _delete_=True))

# mmvit_ext's guards (README: "What is refused and why"). Each line selects one registered
# component; the type in its comment (mmengine's or mmdet's own) switches that guard off, and
# `guards = dict(work_dir_lock=False, ...)` switches off single checks of GuardedRunner.
runner_type = 'GuardedRunner'  # 'Runner'
train_cfg = dict(type='GuardedEpochBasedTrainLoop')  # 'EpochBasedTrainLoop'
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))  # 'CheckpointHook'
train_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))  # 'CocoDataset'
