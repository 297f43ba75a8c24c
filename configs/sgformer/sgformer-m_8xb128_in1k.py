# As sgformer-s_8xb128_in1k.py (the official recipe), with SG-Former-M (drop path 0.2).
_base_ = './sgformer-s_8xb128_in1k.py'

model = dict(backbone=dict(arch='medium', drop_path_rate=0.2), head=dict(in_channels=512))
