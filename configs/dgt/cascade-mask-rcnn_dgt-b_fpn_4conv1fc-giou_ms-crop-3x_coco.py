# As cascade-mask-rcnn_dgt-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py, with the DGT-style base backbone (drop path 0.4).
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './cascade-mask-rcnn_dgt-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

pretrained = 'checkpoints/dgt-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
