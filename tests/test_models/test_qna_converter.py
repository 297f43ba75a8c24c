"""QnA-ViT Flax checkpoint conversion, on files written in the official format."""
import numpy as np
import pytest
import torch

from mmvit_ext.checkpoints import CheckpointMismatchError, check_state_dict
from mmvit_ext.models.backbones import QnAViT
from mmvit_ext.models.converters.flax_msgpack import read_flax_msgpack
from mmvit_ext.models.converters.qna import convert_qna, load_official_qna

from .official_layouts import pack_msgpack, qna_official_forward, qna_official_params


def _leaves(tree):
    return sum(_leaves(v) if isinstance(v, dict) else 1 for v in tree.values())


def test_msgpack_reader_round_trips_flax_format():
    obj = {'step': 1234, 'lr': 0.5, 'name': 'x' * 40, 'flag': True, 'none': None,
           'neg': -7, 'arr': np.arange(6, dtype=np.float32).reshape(2, 3),
           'nested': {'b': np.ones((1, 1, 2, 3), np.float16), 'l': [1, 2, 3]}}
    back = read_flax_msgpack(pack_msgpack(obj))
    assert back['step'] == 1234 and back['lr'] == 0.5 and back['name'] == 'x' * 40
    assert back['flag'] is True and back['none'] is None and back['neg'] == -7
    assert np.array_equal(back['arr'], obj['arr']) and back['arr'].dtype == np.float32
    assert back['nested']['b'].shape == (1, 1, 2, 3) and back['nested']['l'] == [1, 2, 3]


@pytest.mark.parametrize('arch,leaves', [('tiny', 214), ('tiny_7x7', 214), ('small', 358),
                                         ('base', 358)])
def test_official_tree_has_spec_leaf_counts_and_converts_to_every_key(arch, leaves):
    tree = qna_official_params(arch)
    assert _leaves(tree) == leaves
    converted = convert_qna(tree, with_head=False)
    check_state_dict(QnAViT(arch, out_indices=(3, )), converted)  # strict: raises on mismatch


def test_train_state_file_converts_and_matches_hand_placed_weights(tmp_path):
    tree = qna_official_params('tiny', num_classes=10)
    state = {'step': 300 * 1251, 'params': {'params': tree},
             'opt_state': {'mu': {'x': np.zeros(3, np.float32)}}}
    path = tmp_path / 'checkpoint_375300'
    path.write_bytes(pack_msgpack(state))
    converted = load_official_qna(str(path))
    model = QnAViT('tiny', out_indices=(3, )).eval()
    model.load_state_dict({k: v for k, v in converted.items() if not k.startswith('head.')})

    hand = QnAViT('tiny', out_indices=(3, )).eval()
    with torch.no_grad():  # place a few tensors by hand, with the spec's transforms
        hand.load_state_dict(model.state_dict())
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        hand.stem.weight.copy_(t(tree['StemBlock_0']['conv_1x1']['kernel'].transpose(3, 2, 0, 1)))
        blk = tree['QnAStage_1']['QnA_Block_4_stride_2']
        hand.stages[1][3].skip.weight.copy_(t(blk['Conv_0']['kernel'].transpose(3, 2, 0, 1)))
        hand.stages[1][3].attn.to_v.weight.copy_(t(blk['FusedKQnA_0']['to_v']['kernel'].T))
        hand.stages[1][3].attn.attn_scale.copy_(
            t(blk['FusedKQnA_0']['attn_scale_weights'][0, 0]))
        msa = tree['LSAStage_2']['MSA_Block_0']['MultiHeadSelfAttention_0']
        kernel, heads, d = msa['to_qkv']['kernel'], 8, 32  # tiny stage 3: 8 heads of 32
        for i in range(heads):  # official head i: columns [q | k | v] at 3di; ours: rows j*C + di
            for j in range(3):
                hand.stages[2][0].attn.qkv.weight[j * 256 + i * d:j * 256 + (i + 1) * d] = t(
                    kernel[:, 3 * d * i + j * d:3 * d * i + (j + 1) * d].T)
        hand.stages[3][1].attn.proj.weight.copy_(t(
            tree['LSAStage_3']['MSA_Block_1']['MultiHeadSelfAttention_0']['to_out']['kernel'].T))
        hand.norm3.weight.copy_(t(tree['ClassificationHead_0']['LayerNorm_0']['scale']))
    for (k, a), b in zip(model.state_dict().items(), hand.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(converted['head.fc.weight'],
                       t(tree['ClassificationHead_0']['head_logits']['kernel'].T))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.isfinite(model(x)[0]).all()


@pytest.mark.parametrize('arch,size', [('tiny', (224, 224)), ('tiny_7x7', (224, 224)),
                                       ('tiny', (224, 448))])
def test_converted_model_gives_the_official_logits(arch, size):
    """Our network with converted weights == the official network re-derived in float64 NumPy
    straight from the Flax tree (interleaved qkv, unshifted exp; 224x448 has 1x2 and 2x4 MSA
    windows in stages 3-4)."""
    tree = qna_official_params(arch, num_classes=10, seed=3)
    converted = convert_qna(tree)
    model = QnAViT(arch, out_indices=(3, )).eval()
    model.load_state_dict({k: v for k, v in converted.items() if not k.startswith('head.')})
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model(x)[0].mean((2, 3))
        logits = feats @ converted['head.fc.weight'].T + converted['head.fc.bias']
    expected = torch.from_numpy(qna_official_forward(tree, x.numpy(), arch)).float()
    assert expected.abs().max() > 0.5  # a real signal, not a collapsed network
    assert torch.allclose(logits, expected, atol=2e-4, rtol=1e-4), (logits - expected).abs().max()


def test_unknown_or_missing_leaves_are_named():
    tree = qna_official_params('tiny')
    del tree['QnAStage_0']['QnA_Block_1']['FusedKQnA_0']['Wk']
    tree['QnAStage_0']['QnA_Block_1']['FusedKQnA_0']['extra'] = np.zeros(2, np.float32)
    converted = convert_qna(tree, with_head=False)
    with pytest.raises(KeyError) as err:
        check_state_dict(QnAViT('tiny', out_indices=(3, )), converted)
    assert 'stages.0.0.attn.key_weight' in str(err.value)
    assert 'QnAStage_0/QnA_Block_1/FusedKQnA_0/extra' in str(err.value)
    with pytest.raises(KeyError, match='not an official QnA-ViT checkpoint'):
        convert_qna({'foo': {}})


def test_converter_tool_writes_a_strictly_checked_state_dict(tmp_path):
    import subprocess
    import sys

    from ..conftest import REPO, run_env
    src = tmp_path / 'checkpoint_1'
    src.write_bytes(pack_msgpack({'step': 1, 'params': qna_official_params('tiny_7x7')}))
    dst = tmp_path / 'qna.pth'
    proc = subprocess.run([sys.executable, 'tools/model_converters/qna2mmvit.py', str(src),
                           str(dst), '--arch', 'tiny_7x7'], cwd=REPO, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    sd = torch.load(dst, weights_only=True)
    assert sd['backbone.stages.0.0.attn.rpe_bias'].shape == (49, 16) and 'head.fc.bias' in sd
    # the wrong variant is refused with the mismatching keys named
    proc = subprocess.run([sys.executable, 'tools/model_converters/qna2mmvit.py', str(src),
                           str(dst), '--arch', 'tiny'], cwd=REPO, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'rpe_bias: checkpoint (49, 16) vs model (9, 16)' in proc.stderr


def test_init_cfg_loads_the_official_flax_file_directly(tmp_path):
    tree = qna_official_params('tiny', seed=5)
    path = tmp_path / 'checkpoint_375300'  # official name: no extension
    path.write_bytes(pack_msgpack({'step': 7, 'params': tree, 'opt_state': {'count': 3}}))
    bb = QnAViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    bb.init_weights()
    expected = convert_qna(tree, with_head=False)
    for k, v in bb.state_dict().items():
        if k in expected:
            assert torch.equal(v, expected[k]), k
        else:  # the per-output norms the classifier does not have (norm3 = its head norm)
            assert k.startswith(('norm0.', 'norm1.', 'norm2.')), k
    # the converted .pth (backbone.* + head.fc.*) loads the same way
    pth = tmp_path / 'qna.pth'
    torch.save({('backbone.' + k): v for k, v in expected.items()}, pth)
    bb2 = QnAViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(pth)))
    bb2.init_weights()
    assert torch.equal(bb2.stages[2][0].attn.qkv.weight, bb.stages[2][0].attn.qkv.weight)


def test_init_cfg_errors_name_the_problem(tmp_path):
    path = tmp_path / 'checkpoint_1'
    path.write_bytes(pack_msgpack({'params': qna_official_params('tiny_7x7')}))
    with pytest.raises(CheckpointMismatchError, match=r'rpe_bias: checkpoint \(49, 16\) vs model'):
        QnAViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    other = tmp_path / 'checkpoint_2'
    other.write_bytes(pack_msgpack({'params': {'Dense_0': {'kernel': np.zeros((2, 2), np.float32)}}}))
    with pytest.raises(CheckpointMismatchError, match='not an official QnA-ViT checkpoint'):
        QnAViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(other))).init_weights()


def test_converted_classifier_loads_into_the_imagenet_config_and_gives_official_logits(tmp_path):
    """tools/model_converters/qna2mmvit.py output -> mmpretrain ImageClassifier of
    configs/qna/qnavit-t_8xb128_in1k.py, strictly, and the logits are the official ones."""
    import os.path as osp
    import subprocess
    import sys

    from mmengine.config import Config

    from mmvit_ext.apis import build_model_from_cfg

    from ..conftest import REPO, run_env
    tree = qna_official_params('tiny', seed=11)
    src, dst = tmp_path / 'checkpoint_9', tmp_path / 'qnavit-t.pth'
    src.write_bytes(pack_msgpack({'step': 9, 'params': tree}))
    proc = subprocess.run([sys.executable, 'tools/model_converters/qna2mmvit.py', str(src),
                           str(dst), '--arch', 'tiny'], cwd=REPO, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cfg = Config.fromfile(osp.join(REPO, 'configs/qna/qnavit-t_8xb128_in1k.py'))
    model, scope = build_model_from_cfg(cfg)
    assert scope == 'mmpretrain'
    model.load_state_dict(torch.load(dst, weights_only=True), strict=True)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model.eval()(x, mode='tensor')
    expected = torch.from_numpy(qna_official_forward(tree, x.numpy(), 'tiny')).float()
    assert logits.shape == (1, 1000)
    assert torch.allclose(logits, expected, atol=2e-4, rtol=1e-4), (logits - expected).abs().max()
