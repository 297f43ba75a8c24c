# As mask-rcnn_qnavit-t_fpn_1x_coco.py, with QnA-ViT-S (drop path 0.2).
_base_ = './mask-rcnn_qnavit-t_fpn_1x_coco.py'

pretrained = 'checkpoints/qnavit-s_in1k.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
