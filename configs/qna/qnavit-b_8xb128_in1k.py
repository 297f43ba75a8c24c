# As qnavit-t_8xb128_in1k.py (the official recipe), with QnA-ViT-B: drop path 0.5 and 20 warmup
# epochs (official README).
_base_ = './qnavit-t_8xb128_in1k.py'

model = dict(backbone=dict(arch='base', drop_path_rate=0.5), head=dict(in_channels=768))
warmup_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=warmup_epochs, end=300,
         convert_to_iter_based=True),
]
