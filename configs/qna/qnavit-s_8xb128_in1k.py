# As qnavit-t_8xb128_in1k.py (the official recipe), with QnA-ViT-S (drop path 0.2).
_base_ = './qnavit-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='small', drop_path_rate=0.2))
