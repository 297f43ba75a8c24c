# As dilateformer-t_8xb128_in1k.py (official recipe), with DilateFormer-B.
_base_ = './dilateformer-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='base'), head=dict(in_channels=768))
