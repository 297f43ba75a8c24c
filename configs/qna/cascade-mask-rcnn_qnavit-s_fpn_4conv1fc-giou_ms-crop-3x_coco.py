# As cascade-mask-rcnn_qnavit-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py, with QnA-ViT-S (drop path 0.2).
_base_ = './cascade-mask-rcnn_qnavit-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py'

pretrained = 'checkpoints/qnavit-s_in1k.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
