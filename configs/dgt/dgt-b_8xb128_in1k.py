# As dgt-t_8xb128_in1k.py (DeiT-style recipe, this project's hyper-parameters), DGT-style base.
_base_ = './dgt-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='base', drop_path_rate=0.3), head=dict(in_channels=1024))
