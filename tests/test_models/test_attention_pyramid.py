"""The ablation skeleton (AttentionPyramid) and its sizing helper: every variant at the budget,
at odd input sizes and in a detector's loss step; the configs match what the helper sizes."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmvit_ext.analysis.ablation import VARIANTS, backbone_flops, size_to_budget, variant_arch
from mmvit_ext.models.backbones import AttentionPyramid
from mmvit_ext.models.backbones.attention_pyramid import MIXERS

from ..conftest import REPO

ABLATION_DET = sorted(glob.glob(f'{REPO}/configs/ablation/mask-rcnn_ablation-*_fpn_1x_coco.py'))


def _tiny(name):
    """A narrow, shallow form of a variant (width 4 x the stage-1 heads)."""
    heads = VARIANTS[name]['num_heads']
    arch = variant_arch(name, 4 * heads[0], 1)
    return dict(arch, depths=(2, 1, 1, 1))


def test_every_mixer_is_in_the_variant_set():
    used = {a for v in VARIANTS.values() for a in v['attentions']}
    assert used == set(MIXERS)


@pytest.mark.parametrize('path', ABLATION_DET, ids=lambda p: osp.basename(p))
def test_every_variant_config_is_at_the_budget(path):
    """The shipped sizes: each det config's backbone within 2% of 4.5 GFLOPs at 224x224, and the
    seg / cls configs of the variant use the same arch."""
    cfg = Config.fromfile(path)
    arch = cfg.model.backbone.arch.to_dict()
    flops = backbone_flops(arch)['flops']
    assert abs(flops / 4.5e9 - 1) <= 0.02, (path, flops)
    name = osp.basename(path)[len('mask-rcnn_ablation-'):-len('_fpn_1x_coco.py')]
    assert tuple(arch['attentions']) == VARIANTS[name]['attentions']
    for other in (f'ablation-{name}_upernet_8xb2-160k_ade20k-512x512.py',
                  f'ablation-{name}_8xb128_in1k.py'):
        assert Config.fromfile(f'{REPO}/configs/ablation/{other}').model.backbone.arch == arch


def test_every_variant_has_its_configs():
    names = {osp.basename(p)[len('mask-rcnn_ablation-'):-len('_fpn_1x_coco.py')]
             for p in ABLATION_DET}
    assert names == set(VARIANTS)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_variant_runs_odd_sizes_and_a_detector_loss_step(name):
    from mmdet.testing import demo_mm_inputs

    from mmvit_ext.apis import build_model_from_cfg
    arch = _tiny(name)
    torch.manual_seed(0)
    backbone = AttentionPyramid(arch, drop_path_rate=0.).eval()
    widths = backbone.embed_dims
    with torch.no_grad():
        for h, w in [(61, 83), (33, 29)]:
            outs = backbone(torch.randn(1, 3, h, w))
            assert [tuple(o.shape) for o in outs] == [
                (1, c, -(-h // 2**(i + 2)), -(-w // 2**(i + 2))) for i, c in enumerate(widths)]
            assert all(torch.isfinite(o).all() for o in outs)
    cfg = Config.fromfile(f'{REPO}/configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py')
    cfg.model.backbone = dict(type='AttentionPyramid', arch=arch, drop_path_rate=0.)
    cfg.model.neck.in_channels = widths
    model, _ = build_model_from_cfg(cfg)
    model.init_weights()
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 72, 100)] * 2, num_items=[2, 3],
                          num_classes=3, with_mask=True)
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and total > 0
    total.backward()
    stage1 = [p.grad for p in model.backbone.stages[0].parameters()]
    assert all(g is not None for g in stage1) and any(g.abs().sum() > 0 for g in stage1)


def test_sizing_reaches_a_budget_within_tolerance():
    result = size_to_budget('swin-s12', 0.3, tol=0.02)
    assert abs(result['flops'] / 0.3e9 - 1) <= 0.02 and abs(result['error']) <= 0.02
    assert result['flops'] == backbone_flops(result['arch'])['flops']  # a real count
    assert result['counts'] <= 14


@pytest.mark.parametrize('budget,match', [(0.0001, 'out of reach'), (5000., 'out of reach'),
                                          (-1., 'must be > 0')])
def test_sizing_refuses_budgets_it_cannot_reach(budget, match):
    with pytest.raises(ValueError, match=match) as err:
        size_to_budget('none-s12', budget)
    if match == 'out of reach':
        assert 'spans about' in str(err.value) and 'choose a budget' in str(err.value)


def test_sizing_refuses_when_no_size_comes_within_tolerance():
    """A counter that is quadratic at the depths the fit probes (6 and 7) and 1.5x that at
    every other depth, with widths capped where only other depths could meet the budget: the fit
    says reachable, no real count is within tol, and the helper says so instead of returning a
    wrong size."""
    def count(arch):
        width, depth = arch['embed_dims'], arch['depths'][2]
        flops = 1e6 * width**2 * (depth + 4)
        return dict(flops=flops * (1. if depth in (6, 7) else 1.5), params=0)

    with pytest.raises(ValueError, match='comes within 2%'):
        size_to_budget('none-s12', 10.0, count=count, widths=(12, 27), depths=(1, 24))


def test_unknown_attention_and_options_are_refused():
    base = dict(embed_dims=12, depths=(1, 1, 1, 1), num_heads=(3, 3, 3, 3))
    with pytest.raises(ValueError, match="unknown attention 'flash'"):
        AttentionPyramid(dict(base, attentions=('flash', 'global', 'global', 'global')))
    with pytest.raises(ValueError, match=r"attention 'msda' \(stage 1\) takes the options"):
        AttentionPyramid(dict(base, attentions=('msda', ) * 4,
                              attn_cfgs=(dict(window_size=7), {}, {}, {})))
    with pytest.raises(ValueError, match='merge_groups for stages 1-3 only'):
        AttentionPyramid(dict(base, num_heads=(2, 2, 2, 2), attentions=('sg', ) * 4))
    with pytest.raises(ValueError, match='unknown ablation variant'):
        size_to_budget('flash-s12')


def test_sg_pair_hands_the_significance_on():
    """The guided block merges by the map its hybrid block measured: a different map (another
    input to the hybrid block) changes the guided block's output."""
    arch = dict(embed_dims=16, depths=(2, 1, 1, 1), num_heads=(2, 2, 4, 4),
                attentions=('sg', 'global', 'global', 'global'))
    torch.manual_seed(0)
    model = AttentionPyramid(arch, drop_path_rate=0.).eval()
    hybrid, guided = model.stages[0]
    x = torch.randn(1, 20, 24, 16)
    with torch.no_grad():
        _, sig = hybrid(x)
        _, sig2 = hybrid(torch.randn(1, 20, 24, 16))
        assert sig.shape == (1, 20, 24)
        out, carry = guided(x, sig)
        out2, _ = guided(x, sig2)
    assert carry is None and not torch.allclose(out, out2)
