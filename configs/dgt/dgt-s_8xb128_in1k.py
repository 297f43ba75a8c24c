# As dgt-t_8xb128_in1k.py (DeiT-style recipe, this project's hyper-parameters), DGT-style small.
_base_ = './dgt-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='small', drop_path_rate=0.2), head=dict(in_channels=768))
