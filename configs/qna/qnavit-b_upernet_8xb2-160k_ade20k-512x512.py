# As qnavit-t_upernet_8xb2-160k_ade20k-512x512.py, with QnA-ViT-B (drop path 0.3).
_base_ = './qnavit-t_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/qnavit-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
