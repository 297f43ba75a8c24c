import pytest
import torch.nn as nn

from mmvit_ext.models.backbones import DilateFormer


class Detector(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = DilateFormer(dict(embed_dims=24, depths=(1, 1, 1, 1), num_heads=(3, 3, 3, 3)))
        self.neck = nn.Linear(4, 4)


def test_layer_decay_constructor_scales_lr_by_depth_in_mmdet_scope():
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
    model = Detector()
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=0.5)))
    optimizer = ctor(model).optimizer
    lr_of = {id(p): g['lr'] for g in optimizer.param_groups for p in g['params']}
    wd_of = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    n = sum(model.backbone.depths) + 2  # 6 layers: stem, 4 blocks, outputs
    assert lr_of[id(model.backbone.stem[0].weight)] == 0.5**(n - 1)
    assert lr_of[id(model.backbone.stages[2].blocks[0].mlp.fc1.weight)] == 0.5**(n - 1 - 3)
    assert lr_of[id(model.neck.weight)] == 1.0
    assert wd_of[id(model.neck.weight)] == 0.05 and wd_of[id(model.neck.bias)] == 0.
    assert sum(len(g['params']) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_layer_decay_constructor_rejects_unknown_options():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1.0)),
        paramwise_cfg=dict(decay_rate=0.5)))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        ctor(Detector())
