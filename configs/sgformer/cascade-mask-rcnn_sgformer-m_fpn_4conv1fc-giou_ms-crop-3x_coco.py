# As cascade-mask-rcnn_sgformer-s_fpn_4conv1fc-giou_ms-crop-3x_coco.py, with SG-Former-M (drop path 0.3).
_base_ = './cascade-mask-rcnn_sgformer-s_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

pretrained = 'checkpoints/sgformer-m_in1k.pth'
model = dict(
    backbone=dict(arch='medium', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
