# As sgformer-s_8xb128_in1k.py (the official recipe), with SG-Former-B (drop path 0.4).
_base_ = './sgformer-s_8xb128_in1k.py'

model = dict(backbone=dict(arch='base', drop_path_rate=0.4), head=dict(in_channels=768))
