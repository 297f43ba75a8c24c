# As sgformer-s_upernet_8xb2-160k_ade20k-512x512.py, with SG-Former-M (drop path 0.3).
_base_ = './sgformer-s_upernet_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/sgformer-m_in1k.pth'
model = dict(
    backbone=dict(arch='medium', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
