# As dgt-t_upernet_8xb2-160k_ade20k-512x512.py, with the DGT-style small backbone (drop path 0.3).
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './dgt-t_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/dgt-s_in1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
