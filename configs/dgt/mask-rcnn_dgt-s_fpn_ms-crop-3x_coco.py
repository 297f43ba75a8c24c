# As mask-rcnn_dgt-t_fpn_ms-crop-3x_coco.py, with the DGT-style small backbone (drop path 0.3).
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './mask-rcnn_dgt-t_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/dgt-s_in1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
