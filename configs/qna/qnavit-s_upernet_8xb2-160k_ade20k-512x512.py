# As qnavit-t_upernet_8xb2-160k_ade20k-512x512.py, with QnA-ViT-S (drop path 0.2).
_base_ = './qnavit-t_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/qnavit-s_in1k.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
