# As mask-rcnn_qnavit-t_fpn_ms-crop-3x_coco.py, with QnA-ViT-T-7x7 (QnA kernel 7 instead of 3).
_base_ = './mask-rcnn_qnavit-t_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/qnavit-t7x7_in1k.pth'
model = dict(backbone=dict(arch='tiny_7x7', init_cfg=dict(checkpoint=pretrained)))
