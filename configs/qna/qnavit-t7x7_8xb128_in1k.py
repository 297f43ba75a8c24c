# As qnavit-t_8xb128_in1k.py (the official recipe), with QnA-ViT-T-7x7 (QnA kernel 7).
_base_ = './qnavit-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='tiny_7x7'))
