"""The optional NATTEN backend of MSDA (mmvit_ext/attention/msda/natten_backend.py).

NATTEN's fused kernels need CUDA; on the CPU its flex-attention backend runs the forward, which is
enough to check the zero-pad / centred window / crop mapping onto MSDA's semantics with the real
package. (The newest stack installs natten; Python 3.8 has no natten release.)"""
import warnings

import pytest
import torch

from mmvit_ext.attention import attention_form, choose, implementations
from mmvit_ext.attention.msda import dilated_local_attention, natten_backend
from mmvit_ext.attention.msda.reference import dilated_local_attention_reference

natten = pytest.importorskip('natten', reason='natten is installed on the newest stack only')


def _qkv(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


# (B, heads, head_dim, H, W), kernel, dilation: borders, maps smaller than the dilation (extra
# padding), a 5x5 window, and DilateFormer's own head size 32
@pytest.mark.parametrize('shape,kernel,dilation', [
    ((2, 2, 32, 14, 14), 3, 1), ((1, 1, 8, 7, 9), 3, 2), ((1, 3, 16, 5, 13), 3, 3),
    ((1, 2, 32, 2, 9), 3, 3), ((1, 2, 32, 1, 1), 3, 3), ((1, 2, 32, 9, 11), 5, 2),
    ((1, 1, 64, 4, 3), 3, 4)])
def test_natten_gives_msda_border_semantics(shape, kernel, dilation):
    q, k, v = _qkv(shape)
    with torch.no_grad():
        out = natten_backend.dilated_local_attention_natten(q, k, v, kernel, dilation, 0.2,
                                                            backend='flex-fna')
        ref = dilated_local_attention_reference(q, k, v, kernel, dilation, 0.2)
    assert out.shape == ref.shape == q.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=0), (out - ref).abs().max()


def test_natten_without_a_kernel_falls_back_with_one_warning():
    q, k, v = _qkv((1, 1, 4, 6, 6))  # head size 4: NATTEN has no kernel for it
    with pytest.warns(RuntimeWarning, match='NATTEN has no kernel for MSDA with head size 4'):
        out = natten_backend.dilated_local_attention_natten(q, k, v, 3, 2, 0.3)
    assert torch.allclose(out, dilated_local_attention_reference(q, k, v, 3, 2, 0.3), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # said once per head size, dtype and device
        natten_backend.dilated_local_attention_natten(q, k, v, 3, 2, 0.3)


def test_natten_is_registered_for_cuda_only_and_only_by_name_unless_opted_in():
    entry = next(e for e in implementations('msda')['fast'] if e.name == 'natten')
    builtin = next(e for e in implementations('msda')['fast'] if e.name != 'natten')
    assert natten_backend.natten_installed()
    assert natten_backend.natten_auto is False  # MMVIT_NATTEN unset in the tests
    assert entry.priority < builtin.priority  # not chosen by default anywhere
    q, k, v = _qkv((1, 1, 8, 5, 5))
    assert not entry.available(q, k, v, 3, 1, 1.)  # CPU tensors: NATTEN's kernels need CUDA
    with attention_form('natten'):  # asked for by name on the CPU: the built-in form runs
        assert choose('msda', q, k, v, 3, 1, 1.).name == builtin.name
        out = dilated_local_attention(q, k, v, 3, 1, 1.)
    assert torch.allclose(out, dilated_local_attention_reference(q, k, v, 3, 1, 1.), atol=1e-5)


def test_natten_opt_in_is_read_once_and_refuses_other_values(monkeypatch):
    monkeypatch.setenv('MMVIT_NATTEN', '1')
    assert natten_backend._read_env() is True
    monkeypatch.setenv('MMVIT_NATTEN', 'yes')
    with pytest.raises(ValueError, match="MMVIT_NATTEN must be '0'"):
        natten_backend._read_env()
