# As qnavit-t_upernet_8xb2-160k_ade20k-512x512.py, with QnA-ViT-T-7x7 (QnA kernel 7).
_base_ = './qnavit-t_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/qnavit-t7x7_in1k.pth'
model = dict(backbone=dict(arch='tiny_7x7', init_cfg=dict(checkpoint=pretrained)))
