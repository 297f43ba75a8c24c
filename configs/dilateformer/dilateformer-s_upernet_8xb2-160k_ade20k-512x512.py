# As dilateformer-t_upernet_8xb2-160k_ade20k-512x512.py, with DilateFormer-S.
_base_ = './dilateformer-t_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/dilateformer-small_in1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[72, 144, 288, 576]),
    auxiliary_head=dict(in_channels=288))
