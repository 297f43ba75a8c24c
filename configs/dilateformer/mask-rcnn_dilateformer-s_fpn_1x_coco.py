# As mask-rcnn_dilateformer-t_fpn_1x_coco.py, with DilateFormer-S (drop path 0.3, as mmdet/mmseg use for Swin-S).
_base_ = './mask-rcnn_dilateformer-t_fpn_1x_coco.py'

pretrained = 'checkpoints/dilateformer-small_in1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[72, 144, 288, 576]))
