"""A checkpoint of the right family but another arch names the command line that loads it.

Users of the official DilateFormer found that the released base file has depths 2-2-18-2, not
the paper's 4-8-10-3 (official repo, issue #15); every family may meet a file of another zoo
variant. The refusal ends with ``--cfg-options ...``: the test runs that line, as a user would,
and the checkpoint then loads."""
import argparse
import os.path as osp
import re

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config, DictAction

from mmvit_ext.checkpoints import CheckpointMismatchError
from mmvit_ext.models.backbones import DGT, DilateFormer, QnAViT, SGFormer
from mmvit_ext.models.converters import convert_dilateformer

from ..conftest import REPO
from .official_layouts import dilateformer_official_state_dict

RELEASED_B = (96, (2, 2, 18, 2))


def _refusal(cfg: Config) -> str:
    backbone = MODELS.build(cfg.model.backbone)
    with pytest.raises(CheckpointMismatchError) as error:
        backbone.init_weights()
    return str(error.value)


def _suggested_options(message: str):
    """The --cfg-options of the refusal, parsed as tools/train.py parses them."""
    assert 'It loads with --cfg-options ' in message, message
    words = message.split('It loads with --cfg-options ')[1].split()
    options = [w.rstrip('.') for w in words[:next((i for i, w in enumerate(words)
                                                   if '=' not in w), len(words))]]
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options'] + options).cfg_options


def _config(name: str, checkpoint: str) -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    return cfg


def test_released_dilateformer_b_gets_the_line_that_loads_it(tmp_path):
    path = str(tmp_path / 'dilateformer_base.pth')
    released = dilateformer_official_state_dict(RELEASED_B, seed=3)
    torch.save({'model': released}, path)
    cfg = _config('dilateformer/mask-rcnn_dilateformer-b_fpn_1x_coco.py', path)

    message = _refusal(cfg)
    assert 'a DilateFormer backbone of a custom arch' in message
    assert message.endswith('It loads with --cfg-options '
                            'model.backbone.arch_overrides.depths=[2,2,18,2].')

    cfg.merge_from_dict(_suggested_options(message))
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    expected = convert_dilateformer(released, with_head=False)
    loaded = backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    # the override changed the depths only: width and heads stay the B config's
    assert backbone.arch_settings == dict(embed_dims=96, depths=[2, 2, 18, 2],
                                          num_heads=(3, 6, 12, 24))


FAMILIES = [
    # (family, arch the file was built with, config that refuses it)
    (DilateFormer, 'tiny', 'dilateformer/mask-rcnn_dilateformer-s_fpn_1x_coco.py'),
    (SGFormer, 'small', 'sgformer/mask-rcnn_sgformer-m_fpn_1x_coco.py'),
    (QnAViT, 'tiny', 'qna/mask-rcnn_qnavit-t7x7_fpn_1x_coco.py'),
    (DGT, 'tiny', 'dgt/mask-rcnn_dgt-s_fpn_1x_coco.py'),
]


@pytest.mark.parametrize('family,arch,config', FAMILIES, ids=[f[0].__name__ for f in FAMILIES])
def test_a_file_of_another_zoo_variant_gets_the_arch_that_loads_it(family, arch, config,
                                                                   tmp_path):
    torch.manual_seed(0)
    weights = {f'backbone.{k}': v for k, v in family(arch).state_dict().items()}
    path = str(tmp_path / f'{arch}.pth')
    torch.save({'state_dict': weights, 'meta': {}}, path)
    cfg = _config(config, path)

    message = _refusal(cfg)
    assert message.endswith(f'It loads with --cfg-options model.backbone.arch={arch} (the '
                            f'{MODELS.build(dict(type=family.__name__, arch=arch)).describe()} '
                            'arch).')
    options = _suggested_options(message)
    assert options == {'model.backbone.arch': arch}
    cfg.merge_from_dict(options)
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    loaded = backbone.state_dict()
    assert all(torch.equal(loaded[k[len('backbone.'):]], v) for k, v in weights.items())


@pytest.mark.parametrize('family,custom', [
    (QnAViT, dict(embed_dims=32, qna_depths=(1, 2, 1, 0), msa_depths=(0, 0, 2, 1),
                  qna_heads=(4, 8, 16), msa_heads=(0, 0, 4, 8), kernel_size=5)),
    (DGT, dict(embed_dims=(32, 64, 128, 256), depths=(1, 2, 2, 1), num_heads=(1, 2, 4, 8),
               num_groups=(16, 8, 4, 1), topk=(256, 192, 128, None), stem_channels=16)),
    (SGFormer, dict(embed_dims=(32, 64, 128, 256), depths=(1, 1, 2, 1), num_heads=(2, 4, 8, 16))),
], ids=['QnAViT', 'DGT', 'SGFormer'])
def test_a_custom_arch_is_read_from_the_tensors(family, custom):
    """Depths, widths, kernel and (for QnA, where they shape the bias tables) heads come from
    the tensors; a hint that would build an arch the family refuses says so instead."""
    source = family(custom).state_dict()
    target = family(next(iter(family.arch_zoo)))
    hint = target.arch_hint(source)
    found = family.arch_from_weights(source)
    assert all(list(v) == list(custom[k]) if isinstance(v, (list, tuple)) else v == custom[k]
               for k, v in found.items())
    with pytest.raises(CheckpointMismatchError) as error:  # the path of init_detector & co.
        target.load_state_dict(source)
    assert str(error.value).endswith(hint)
    if 'It loads with' in hint:
        overrides = {k: v for k, v in found.items()}
        rebuilt = family(target.arch_settings, arch_overrides=overrides)
        rebuilt.load_state_dict(source)  # strict, and checked by the backbone itself
    else:
        assert 'head counts change no weight shape' in hint, hint
