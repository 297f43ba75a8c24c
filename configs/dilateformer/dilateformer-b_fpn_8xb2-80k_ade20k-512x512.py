# As dilateformer-s_fpn_8xb2-80k_ade20k-512x512.py, with DilateFormer-B (paper: 48.8 mIoU, per a
# public transcription). Drop path 0.3 for the larger model: our choice.
_base_ = './dilateformer-s_fpn_8xb2-80k_ade20k-512x512.py'

pretrained = 'checkpoints/dilateformer-base_in1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
