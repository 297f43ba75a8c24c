# As mask-rcnn_dilateformer-t_fpn_ms-crop-3x_coco.py, with DilateFormer-B.
# Drop path 0.3: our choice (the paper's detection code is not released); it is mmseg's rate
# for Swin-S UperNet; mmdet's Swin-S Mask R-CNN keeps Swin-T's 0.2.
_base_ = './mask-rcnn_dilateformer-t_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/dilateformer-base_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
