# As dilateformer-t_8xb128_in1k.py (official recipe), with DilateFormer-S.
_base_ = './dilateformer-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='small'), head=dict(in_channels=576))
