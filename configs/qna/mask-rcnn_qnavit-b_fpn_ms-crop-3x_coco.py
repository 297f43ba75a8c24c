# As mask-rcnn_qnavit-t_fpn_ms-crop-3x_coco.py, with QnA-ViT-B (drop path 0.3).
_base_ = './mask-rcnn_qnavit-t_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/qnavit-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
