import argparse
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from mmvit_ext.checkpoints import CheckpointMismatchError
from mmvit_ext.models.backbones import SGFormer
from mmvit_ext.models.converters import (convert_sgformer, infer_sgformer_arch,
                                         load_official_sgformer)

from ..conftest import REPO, run_env
from .official_layouts import sgformer_official_state_dict

# a narrow model with the official structure (stage 1-3 depths even), for fast forward passes
NARROW = dict(dims=(16, 32, 64, 128), depths=(2, 2, 2, 1))
NARROW_ARCH = dict(embed_dims=(16, 32, 64, 128), depths=(2, 2, 2, 1), num_heads=(2, 2, 4, 4))


@pytest.mark.parametrize('arch,num_keys', [('s', 669), ('m', 1069), ('b', 1017)])
def test_official_layout_has_spec_key_counts_and_converts_to_every_key(arch, num_keys):
    official = sgformer_official_state_dict(arch)
    assert len(official) == num_keys
    converted = convert_sgformer(official, with_head=False)
    model = SGFormer(arch)
    own = model.state_dict()
    assert set(converted) == set(own)
    for k, v in converted.items():
        assert v.shape == own[k].shape, k
    inferred = infer_sgformer_arch(converted, SGFormer.arch_zoo.values())
    assert tuple(inferred['depths']) == model.depths
    assert tuple(inferred['num_heads']) == model.num_heads


def _place_by_hand(bb, head, sd):
    """Copy official tensors into our modules by attribute, independently of the converter."""
    def put(module, key):
        module.weight.copy_(sd[f'{key}.weight'])
        if getattr(module, 'bias', None) is not None:
            module.bias.copy_(sd[f'{key}.bias'])

    with torch.no_grad():
        bb.pos_embed.copy_(sd['pos_embed'])
        for n, unit in zip((0, 2, 4), (bb.stem.layers[0], bb.stem.layers[2], bb.stem.layers[4])):
            put(unit.conv, f'patch_embed1.conv.{n}.c')
            put(unit.norm, f'patch_embed1.conv.{n}.bn')
        put(bb.stem.norm, 'patch_embed1.norm')
        for i, ds in enumerate(bb.downsamples):
            for k, unit in enumerate((ds.conv1, ds.conv2, ds.conv3), start=1):
                put(unit.conv, f'patch_embed{i + 2}.conv{k}.c')
                put(unit.norm, f'patch_embed{i + 2}.conv{k}.bn')
        for s, stage in enumerate(bb.stages):
            for j, blk in enumerate(stage):
                p = f'block{s + 1}.{j}'
                for mod, key in ((blk.norm1, 'norm1'), (blk.norm2, 'norm2'),
                                 (blk.mlp.fc1, 'mlp.fc1'), (blk.mlp.fc2, 'mlp.fc2'),
                                 (blk.mlp.dwconv, 'mlp.dwconv.dwconv'),
                                 (blk.attn.lepe_linear, 'attn.lepe_linear'),
                                 (blk.attn.lepe_conv, 'attn.lepe_conv'),
                                 (blk.attn.proj, 'attn.proj')):
                    put(mod, f'{p}.{key}')
                a = blk.attn
                if blk.attn_type == 'hybrid':
                    pairs = ((a.sr, 'sr'), (a.sr_norm, 'norm'), (a.global_q, 'q1'),
                             (a.global_kv, 'kv1'), (a.local_q, 'q2'), (a.local_kv, 'kv2'))
                elif blk.attn_type == 'guided':
                    pairs = ((a.q, 'q'), (a.row_kv, 'kv1'), (a.col_kv, 'kv2')) + tuple(
                        (f, f'f{n + 1}') for n, f in enumerate(a.merges))
                else:
                    pairs = ((a.q, 'q'), (a.kv, 'kv'))
                for mod, key in pairs:
                    put(mod, f'{p}.attn.{key}')
            put(getattr(bb, f'norm{s}'), f'norm{s + 1}')
        put(head, 'head')


def _logits(bb, head, x):
    return head(bb(x)[0].mean((2, 3)))


def test_converted_classifier_gives_same_logits_as_hand_placed_tensors(tmp_path):
    official = sgformer_official_state_dict('s', num_classes=10, **NARROW)
    hand_bb, hand_head = SGFormer(NARROW_ARCH, out_indices=(3, )).eval(), nn.Linear(128, 10)
    _place_by_hand(hand_bb, hand_head, official)

    # timm's checkpoint_saver layout; the EMA weights are what the tool takes by default
    ckpt = dict(epoch=309, arch='sgformer_s', args=argparse.Namespace(lr=1e-3),
                state_dict={k: v * 0.5 for k, v in official.items()}, state_dict_ema=official,
                optimizer=dict(state={}, param_groups=[dict(lr=1e-5, params=[0, 1])]),
                version=2, metric=83.2)
    src, dst = tmp_path / 'SG-Former-S.pth', tmp_path / 'converted.pth'
    torch.save(ckpt, src)
    proc = subprocess.run([sys.executable, 'tools/model_converters/sgformer2mmvit.py', str(src),
                           str(dst)], cwd=REPO, env=run_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'ema weights' in proc.stdout
    converted = torch.load(dst, weights_only=True)
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in converted)

    conv_bb = SGFormer(NARROW_ARCH, out_indices=(3, )).eval()
    conv_bb.load_state_dict({k[9:]: v for k, v in converted.items() if k.startswith('backbone.')})
    conv_head = nn.Linear(128, 10)
    conv_head.load_state_dict({k[8:]: v for k, v in converted.items() if k.startswith('head.fc.')})
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected = _logits(hand_bb, hand_head, x)
        assert torch.allclose(_logits(conv_bb, conv_head, x), expected, atol=1e-5)

    # the mmpretrain classifier loads the converted file as is
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    clf = MODELS.build(dict(type='ImageClassifier',
                            backbone=dict(type='SGFormer', arch=NARROW_ARCH, out_indices=(3, )),
                            neck=dict(type='GlobalAveragePooling'),
                            head=dict(type='LinearClsHead', num_classes=10,
                                      in_channels=128))).eval()
    clf.load_state_dict(converted, strict=True)
    with torch.no_grad():
        assert torch.allclose(clf(x, mode='tensor'), expected, atol=1e-5)

    # --weights model takes state_dict instead
    proc = subprocess.run([sys.executable, 'tools/model_converters/sgformer2mmvit.py', str(src),
                           str(tmp_path / 'model.pth'), '--weights', 'model', '--backbone-only'],
                          cwd=REPO, env=run_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    plain = torch.load(tmp_path / 'model.pth', weights_only=True)
    assert torch.equal(plain['pos_embed'], official['pos_embed'] * 0.5)
    assert not any(k.startswith('head') for k in plain)


def test_kv_projections_are_mapped_by_block_parity():
    """kv1/kv2 mean global/local keys in H blocks and row/column-sorted keys in G blocks."""
    official = sgformer_official_state_dict('s', **NARROW)
    converted = convert_sgformer(official)
    assert torch.equal(converted['stages.0.0.attn.global_kv.weight'],
                       official['block1.0.attn.kv1.weight'])
    assert torch.equal(converted['stages.0.0.attn.local_kv.weight'],
                       official['block1.0.attn.kv2.weight'])
    assert torch.equal(converted['stages.0.1.attn.row_kv.weight'],
                       official['block1.1.attn.kv1.weight'])
    assert torch.equal(converted['stages.0.1.attn.col_kv.weight'],
                       official['block1.1.attn.kv2.weight'])
    assert torch.equal(converted['stages.2.1.attn.merges.1.weight'],
                       official['block3.1.attn.f2.weight'])
    assert torch.equal(converted['norm0.weight'], official['norm1.weight'])
    # a G-only name in an H block is not silently mapped: it stays and the strict check names it
    bad = dict(official)
    bad['block1.0.attn.f1.weight'] = torch.zeros(1, 196)
    from mmvit_ext.checkpoints import check_state_dict
    with pytest.raises(CheckpointMismatchError, match=r'stages\.0\.0\.attn\.f1\.weight'):
        check_state_dict(SGFormer(NARROW_ARCH), {k: v for k, v in convert_sgformer(bad).items()
                                                 if not k.startswith('head.')})


def test_init_cfg_loads_official_file_ema_by_default(tmp_path):
    model_sd = sgformer_official_state_dict('s', seed=1, **NARROW)
    ema_sd = sgformer_official_state_dict('s', seed=2, **NARROW)
    path = tmp_path / 'official.pth'
    torch.save(dict(state_dict=model_sd, state_dict_ema=ema_sd, args=argparse.Namespace(a=1),
                    epoch=3), path)
    bb = SGFormer(NARROW_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    bb.init_weights()
    assert torch.equal(bb.pos_embed, ema_sd['pos_embed'])
    assert torch.equal(bb.stages[1][1].attn.row_kv.weight, ema_sd['block2.1.attn.kv1.weight'])
    bb = SGFormer(NARROW_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path), ema=False))
    bb.init_weights()
    assert torch.equal(bb.pos_embed, model_sd['pos_embed'])
    assert torch.equal(
        load_official_sgformer(torch.load(path, weights_only=False))['norm3.bias'],
        ema_sd['norm4.bias'])


def test_wrong_or_incomplete_checkpoints_are_errors_naming_keys(tmp_path):
    m_sd = sgformer_official_state_dict('m')
    path = tmp_path / 'm.pth'
    torch.save(dict(state_dict_ema=m_sd), path)
    with pytest.raises(CheckpointMismatchError, match=r'unexpected keys .*stages\.1\.4'):
        SGFormer('s', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()

    s_sd = sgformer_official_state_dict('s')
    del s_sd['block3.7.attn.kv2.weight']
    s_sd['dist_head.weight'] = torch.zeros(3)
    path = tmp_path / 's_broken.pth'
    torch.save(dict(state_dict_ema=s_sd), path)
    with pytest.raises(CheckpointMismatchError) as err:
        SGFormer('s', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    assert 'stages.2.7.attn.col_kv.weight' in str(err.value)
    assert 'dist_head.weight' in str(err.value)

    # a BatchNorm-style stem (running stats) is not GroupNorm: named as unexpected
    bn_sd = sgformer_official_state_dict('s')
    bn_sd['patch_embed1.conv.0.bn.running_mean'] = torch.zeros(64)
    path = tmp_path / 's_bn.pth'
    torch.save(bn_sd, path)
    proc = subprocess.run([sys.executable, 'tools/model_converters/sgformer2mmvit.py', str(path),
                           str(tmp_path / 'out.pth')], cwd=REPO, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'stem.layers.0.norm.running_mean' in proc.stderr

    torch.save({'foo': torch.zeros(1)}, tmp_path / 'other.pth')
    proc = subprocess.run([sys.executable, 'tools/model_converters/sgformer2mmvit.py',
                           str(tmp_path / 'other.pth'), str(tmp_path / 'o.pth')], cwd=REPO,
                          env=run_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and 'not an official SG-Former' in proc.stderr
