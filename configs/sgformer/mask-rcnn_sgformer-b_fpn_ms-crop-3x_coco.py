# As mask-rcnn_sgformer-s_fpn_ms-crop-3x_coco.py, with SG-Former-B (drop path 0.4).
_base_ = './mask-rcnn_sgformer-s_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/sgformer-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
