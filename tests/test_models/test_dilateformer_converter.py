import argparse
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from mmvit_ext.checkpoints import CheckpointMismatchError
from mmvit_ext.models.backbones import DilateFormer
from mmvit_ext.models.converters import (convert_dilateformer, infer_dilateformer_arch,
                                         load_official_dilateformer)

from ..conftest import REPO, run_env
from .official_layouts import dilateformer_official_state_dict


@pytest.mark.parametrize('arch,num_keys', [('tiny', 212), ('small', 310), ('base', 394)])
def test_official_layout_has_spec_key_counts_and_converts_to_every_key(arch, num_keys):
    official = dilateformer_official_state_dict(arch)
    assert len(official) == num_keys
    converted = convert_dilateformer(official, with_head=False)
    model = DilateFormer(arch, out_indices=(3, ))
    assert set(converted) == set(model.state_dict())
    for k, v in converted.items():
        assert v.shape == model.state_dict()[k].shape, k
    assert infer_dilateformer_arch(converted)['depths'] == tuple(model.depths)


def _place_by_hand(backbone, head, sd):
    """Copy official tensors into our modules by attribute, independently of the converter."""
    with torch.no_grad():
        for i in (0, 3, 6, 9):
            backbone.stem[i].weight.copy_(sd[f'patch_embed.proj.{i}.weight'])
        for i in (1, 4, 7):
            bn = backbone.stem[i]
            for name in ('weight', 'bias', 'running_mean', 'running_var'):
                getattr(bn, name).copy_(sd[f'patch_embed.proj.{i}.{name}'])
        for s, stage in enumerate(backbone.stages):
            for b, blk in enumerate(stage.blocks):
                p = f'stages.{s}.blocks.{b}'
                blk.cpe.weight.copy_(sd[f'{p}.pos_embed.weight'])
                blk.cpe.bias.copy_(sd[f'{p}.pos_embed.bias'])
                blk.attn.qkv.weight.copy_(sd[f'{p}.attn.qkv.weight'].reshape(blk.attn.qkv.weight.shape))
                for mod, key in ((blk.norm1, 'norm1'), (blk.norm2, 'norm2'), (blk.attn.qkv, 'attn.qkv'),
                                 (blk.attn.proj, 'attn.proj'), (blk.mlp.fc1, 'mlp.fc1'),
                                 (blk.mlp.fc2, 'mlp.fc2')):
                    if key != 'attn.qkv':
                        mod.weight.copy_(sd[f'{p}.{key}.weight'])
                    mod.bias.copy_(sd[f'{p}.{key}.bias'])
            if s < 3:
                ds = backbone.downsamples[s]
                ds.conv.weight.copy_(sd[f'stages.{s}.downsample.proj.0.weight'])
                ds.conv.bias.copy_(sd[f'stages.{s}.downsample.proj.0.bias'])
                for name in ('weight', 'bias', 'running_mean', 'running_var'):
                    getattr(ds.norm, name).copy_(sd[f'stages.{s}.downsample.proj.1.{name}'])
        backbone.norm3.weight.copy_(sd['norm.weight'])
        backbone.norm3.bias.copy_(sd['norm.bias'])
        head.weight.copy_(sd['head.weight'])
        head.bias.copy_(sd['head.bias'])


def _logits(backbone, head, x):
    return head(backbone(x)[0].mean((2, 3)))


def test_converted_classifier_gives_same_logits_as_hand_placed_tensors(tmp_path):
    official = dilateformer_official_state_dict('tiny', num_classes=10)
    hand_bb, hand_head = DilateFormer('tiny', out_indices=(3, )).eval(), nn.Linear(576, 10)
    _place_by_hand(hand_bb, hand_head, official)

    # the official training dict, with non-tensor entries as main.py saves them
    ckpt = dict(model=official, model_ema={k: v + 1 for k, v in official.items()
                                           if v.is_floating_point()},
                args=argparse.Namespace(lr=1e-3, model='dilateformer_tiny'), epoch=299,
                max_accuracy=82.1)
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(ckpt, src)
    proc = subprocess.run([sys.executable, 'tools/model_converters/dilateformer2mmvit.py', str(src),
                           str(dst)], cwd=REPO, env=run_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    converted = torch.load(dst, weights_only=True)  # a plain tensor-only state dict
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in converted)

    conv_bb, conv_head = DilateFormer('tiny', out_indices=(3, )).eval(), nn.Linear(576, 10)
    conv_bb.load_state_dict({k[9:]: v for k, v in converted.items() if k.startswith('backbone.')})
    conv_head.load_state_dict({k[8:]: v for k, v in converted.items() if k.startswith('head.fc.')})
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert torch.allclose(_logits(conv_bb, conv_head, x), _logits(hand_bb, hand_head, x),
                              atol=1e-5)
    # the mmpretrain classifier loads the converted file as is
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')  # builds go through the current default scope's registry
    clf = MODELS.build(dict(type='ImageClassifier',
                            backbone=dict(type='DilateFormer', arch='tiny', out_indices=(3, )),
                            neck=dict(type='GlobalAveragePooling'),
                            head=dict(type='LinearClsHead', num_classes=10, in_channels=576))).eval()
    clf.load_state_dict(converted, strict=True)
    with torch.no_grad():
        assert torch.allclose(clf(x, mode='tensor'), _logits(hand_bb, hand_head, x), atol=1e-5)


def test_ema_choice_and_backbone_init_cfg_loads_official_file_directly(tmp_path):
    official = dilateformer_official_state_dict('tiny', seed=1)
    ema = dilateformer_official_state_dict('tiny', seed=2)
    path = tmp_path / 'official.pth'
    torch.save(dict(model=official, model_ema=ema, args=argparse.Namespace(a=1)), path)
    assert torch.equal(load_official_dilateformer(torch.load(path, weights_only=False),
                                                  prefer_ema=True)['stem.0.weight'],
                       ema['patch_embed.proj.0.weight'])

    bb = DilateFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    bb.init_weights()
    assert torch.equal(bb.stem[0].weight, official['patch_embed.proj.0.weight'])
    assert torch.equal(bb.norm3.weight, official['norm.weight'])
    assert torch.equal(bb.stages[0].blocks[0].attn.qkv.weight,
                       official['stages.0.blocks.0.attn.qkv.weight'].flatten(1))


def test_wrong_or_incomplete_checkpoints_are_errors_naming_keys(tmp_path):
    small = dilateformer_official_state_dict('small')
    path = tmp_path / 'small.pth'
    torch.save(dict(model=small), path)
    with pytest.raises(CheckpointMismatchError, match=r'unexpected keys .*stages\.0\.blocks\.2'):
        DilateFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()

    tiny = dilateformer_official_state_dict('tiny')
    del tiny['stages.2.blocks.5.mlp.fc1.weight']
    tiny['aux_head.weight'] = torch.zeros(3)  # e.g. a Token Labeling extra
    path = tmp_path / 'tiny_broken.pth'
    torch.save(dict(model=tiny), path)
    with pytest.raises(CheckpointMismatchError) as err:
        DilateFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    assert 'stages.2.blocks.5.mlp.fc1.weight' in str(err.value)
    assert 'aux_head.weight' in str(err.value)

    proc = subprocess.run([sys.executable, 'tools/model_converters/dilateformer2mmvit.py',
                           str(path), str(tmp_path / 'out.pth')], cwd=REPO, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'aux_head.weight' in proc.stderr

    torch.save({'foo': torch.zeros(1)}, tmp_path / 'other.pth')
    proc = subprocess.run([sys.executable, 'tools/model_converters/dilateformer2mmvit.py',
                           str(tmp_path / 'other.pth'), str(tmp_path / 'o.pth')], cwd=REPO,
                          env=run_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and 'not an official DilateFormer' in proc.stderr


@pytest.mark.parametrize('wrap', ['bare', 'state_dict', 'module_prefix'])
def test_every_official_container_form_converts(wrap):
    official = dilateformer_official_state_dict('tiny')
    if wrap == 'bare':
        ckpt = dict(official)
    elif wrap == 'state_dict':
        ckpt = dict(state_dict=official, args=argparse.Namespace(x=1))
    else:
        ckpt = dict(model={'module.' + k: v for k, v in official.items()})
    converted = load_official_dilateformer(ckpt)
    assert torch.equal(converted['stem.9.weight'], official['patch_embed.proj.9.weight'])
    assert torch.equal(converted['head.fc.bias'], official['head.bias'])
    assert len(converted) == len(official)
