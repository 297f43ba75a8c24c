# As dgt-t_upernet_8xb2-160k_ade20k-512x512.py, with the DGT-style base backbone (drop path 0.4).
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './dgt-t_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/dgt-b_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
