"""The mmdet/mmseg backbone contract, the same for every backbone: registration in all three
frameworks, ``with_cp``, drop path, the deprecated ``pretrained`` argument, loading the backbone
part of a detector checkpoint, and clear errors for bad ``out_indices`` and inputs."""
import pytest
import torch

from mmvit_ext.checkpoints import CheckpointMismatchError
from mmvit_ext.models.backbones import AttentionPyramid, DGT, DilateFormer, QnAViT, SGFormer

SMALL = {  # narrow variants, quick on CPU
    'DilateFormer': (DilateFormer, 'tiny'),
    'SGFormer': (SGFormer, dict(embed_dims=(16, 32, 64, 128), depths=(2, 2, 2, 1),
                                num_heads=(2, 2, 4, 4))),
    'QnAViT': (QnAViT, dict(embed_dims=16, qna_depths=(1, 1, 1, 0), msa_depths=(0, 0, 1, 1),
                            qna_heads=(2, 4, 8), msa_heads=(0, 0, 2, 4), kernel_size=3)),
    'DGT': (DGT, dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                      num_groups=(4, 4, 2, 1), topk=(16, 16, 8, None), stem_channels=8)),
    # the ablation skeleton with four different attentions, SG-Former's pair in stage 1
    'AttentionPyramid': (AttentionPyramid, dict(embed_dims=16, depths=(2, 1, 1, 2),
                                                num_heads=(2, 2, 4, 4),
                                                attentions=('sg', 'qna', 'dg', 'swin'))),
}
backbones = pytest.mark.parametrize('name', list(SMALL))


def _build(name, **kwargs):
    cls, arch = SMALL[name]
    return cls(arch, **kwargs)


@backbones
def test_registered_in_every_framework(name):
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    cls, arch = SMALL[name]
    for registry in (DET, SEG, CLS):
        assert isinstance(registry.build(dict(type=name, arch=arch)), cls)


@backbones
def test_with_cp_gives_identical_gradients(name):
    torch.manual_seed(0)
    a = _build(name, drop_path_rate=0.)
    b = _build(name, drop_path_rate=0., with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 70, 52)
    for m in (a, b):
        m.train()
        sum(o.sum() for o in m(x.clone().requires_grad_())).backward()
    for (param, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5, rtol=1e-4), param


@backbones
def test_drop_path_is_active_in_training_only(name):
    m = _build(name, drop_path_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x)[3], m(x)[3])
        m.train()
        torch.manual_seed(0)
        a = m(x)[3]
        torch.manual_seed(1)
        assert not torch.allclose(a, m(x)[3])


@backbones
def test_deprecated_pretrained_argument_becomes_init_cfg(name):
    assert _build(name, pretrained='x.pth').init_cfg == dict(type='Pretrained',
                                                             checkpoint='x.pth')
    with pytest.raises(ValueError, match='cannot be set at the same time'):
        _build(name, pretrained='x.pth', init_cfg=dict(type='Pretrained', checkpoint='y.pth'))
    with pytest.raises(ValueError, match="needs a 'checkpoint'"):
        _build(name, init_cfg=dict(type='Pretrained')).init_weights()


@backbones
def test_detector_checkpoint_loads_its_backbone_part(name, tmp_path):
    src = _build(name)
    sd = {'backbone.' + k: v for k, v in src.state_dict().items()}
    sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'det.pth'
    torch.save(dict(state_dict=sd, meta=dict(epoch=12)), path)
    for prefix in ('backbone.', None):  # explicit, or found from the keys
        dst = _build(name, init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix=prefix))
        dst.init_weights()
        for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
            assert torch.equal(a, b), k
    with pytest.raises(CheckpointMismatchError, match="prefix 'head.'"):
        _build(name, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                   prefix='head.')).init_weights()


@backbones
def test_bad_out_indices_frozen_stages_and_inputs_are_clear_errors(name):
    with pytest.raises(ValueError, match='out_indices'):
        _build(name, out_indices=(4, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        _build(name, frozen_stages=5)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        _build(name)(torch.randn(3, 32, 32))
