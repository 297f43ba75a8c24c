"""The layers with a second form, against the plain PyTorch ops they replace: GroupNorm(1, C)
(a CUDA form) and DGT's IRFFN (a memory-lean form)."""
import copy

import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis.benchmark import saved_activation_bytes
from mmvit_ext.attention import attention_form
from mmvit_ext.attention.forms import choose
from mmvit_ext.models.layers.group_norm1 import (GroupNorm1, _GroupNorm1Function,
                                                 group_norm1_var_mean)
from mmvit_ext.models.layers.irffn import irffn, irffn_hidden
from mmvit_ext.models.layers.irffn import irffn_hidden_plain as _plain_irffn_hidden


@pytest.fixture(autouse=True)
def lean():
    """The IRFFN function is the memory-lean form (the accelerators' default); test it here."""
    with attention_form('lean'):
        yield


def test_the_fast_form_is_the_layer_by_layer_one():
    m = _randomised(_Hidden(4))
    x = torch.randn(1, 3, 3, 4, requires_grad=True)
    with attention_form('fast'):
        assert type(irffn_hidden(x, *m.layers()).grad_fn).__name__ != \
            '_IRFFNHiddenFunctionBackward'


def _randomised(module, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith('running_var'):
                t.uniform_(0.5, 2.)
            elif t.is_floating_point():
                t.normal_()
    return module


# ----------------------------------------------------------------------------- GroupNorm(1, C)
def test_group_norm1_function_has_exact_gradients():
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: _GroupNorm1Function.apply(*t, 1e-5), (x, w, b))


@pytest.mark.parametrize('channels_last', [False, True])
def test_group_norm1_equals_native_group_norm(channels_last):
    native = _randomised(nn.GroupNorm(1, 16))
    ours = GroupNorm1(16)
    ours.load_state_dict(native.state_dict())  # same keys
    x = 3 + 2 * torch.randn(2, 16, 11, 9)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    ref = native(x)
    out = group_norm1_var_mean(x, ours.weight, ours.bias, ours.eps)  # the CUDA form
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, [x, ours.weight, ours.bias], g),
                    torch.autograd.grad(ref, [x, native.weight, native.bias], g)):
        assert torch.allclose(a, b, atol=1e-4)
    # on the CPU the module keeps the native kernel (3x faster there than var_mean)
    assert torch.equal(ours(x), ref) and isinstance(ours, nn.GroupNorm)


def test_group_norm1_under_autocast_runs_in_fp32_as_cuda_autocast_runs_group_norm():
    m = _randomised(GroupNorm1(8))
    x = torch.randn(1, 8, 5, 5)
    with torch.autocast('cpu', torch.bfloat16):
        out = group_norm1_var_mean(x.bfloat16(), m.weight, m.bias)
    ref = torch.nn.functional.group_norm(x.bfloat16().float(), 1, m.weight, m.bias)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-5)


# ----------------------------------------------------------------------------- IRFFN
class _Hidden(nn.Module):
    """The IRFFN layers up to fc2, as DGT builds them."""

    def __init__(self, dims, ratio=4):
        super().__init__()
        hidden = dims * ratio
        self.fc1 = nn.Linear(dims, hidden)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Linear(hidden, dims)

    def layers(self):
        return self.fc1, self.norm1, self.dwconv, self.norm2, self.fc2


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('training', [True, False])
def test_irffn_function_equals_the_layer_by_layer_form(dtype, training):
    plain = _randomised(_Hidden(6)).to(dtype).train(training)
    fused = copy.deepcopy(plain)
    x = torch.randn(2, 5, 7, 6, dtype=dtype, requires_grad=True)
    ref = _plain_irffn_hidden(x, *plain.layers())
    out = irffn_hidden(x, *fused.layers())
    assert type(out.grad_fn).__name__ == '_IRFFNHiddenFunctionBackward'
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(out, ref, atol=tol)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, [x, *fused.parameters()], g),
                    torch.autograd.grad(ref, [x, *plain.parameters()], g)):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    # running statistics and the batch counter move exactly as nn.BatchNorm2d moves them
    for a, b in zip(fused.buffers(), plain.buffers()):
        assert torch.equal(a, b)


def test_irffn_function_with_cumulative_batchnorm_average():
    plain = _randomised(_Hidden(4))
    for bn in (plain.norm1, plain.norm2):
        bn.momentum = None
    fused = copy.deepcopy(plain)
    for _ in range(3):
        x = torch.randn(2, 3, 3, 4, requires_grad=True)
        _plain_irffn_hidden(x, *plain.layers()).sum().backward()
        irffn_hidden(x, *fused.layers()).sum().backward()
    for a, b in zip(fused.buffers(), plain.buffers()):
        assert torch.allclose(a, b, atol=1e-6)


def test_irffn_function_keeps_one_of_the_six_hidden_activations():
    m = _Hidden(16)
    x = torch.randn(1, 24, 24, 16, requires_grad=True)
    params = list(m.parameters())
    plain = saved_activation_bytes(lambda: _plain_irffn_hidden(x, *m.layers()), params)
    fused = saved_activation_bytes(lambda: irffn_hidden(x, *m.layers()), params)
    hidden = 24 * 24 * 64 * 4  # bytes of one 4x-wide activation
    assert plain >= 6 * hidden and fused <= hidden + x.numel() * 4 + 1024


def test_irffn_bf16_autocast_matches_the_layer_by_layer_form():
    plain = _randomised(_Hidden(8))
    fused = copy.deepcopy(plain)
    x = torch.randn(2, 6, 6, 8, requires_grad=True)
    with torch.autocast('cpu', torch.bfloat16):
        ref = _plain_irffn_hidden(x, *plain.layers())
        out = irffn_hidden(x, *fused.layers())
    assert out.dtype == ref.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref.float(), atol=0.05, rtol=0.02)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, [x, *fused.parameters()], g),
                    torch.autograd.grad(ref, [x, *plain.parameters()], g)):
        assert a.dtype == b.dtype
        assert ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-6)) < 0.02


def test_irffn_takes_the_plain_path_without_grad_and_for_sync_bn():
    m = _randomised(_Hidden(4))
    x = torch.randn(1, 3, 3, 4)
    with torch.no_grad():
        assert irffn_hidden(x, *m.layers()).grad_fn is None
    x.requires_grad_()
    m_sync = copy.deepcopy(m)
    m_sync.norm1 = nn.SyncBatchNorm.convert_sync_batchnorm(m_sync.norm1)
    m_sync.eval()  # SyncBatchNorm in eval runs on the CPU
    out = irffn_hidden(x, *m_sync.layers())
    assert type(out.grad_fn).__name__ != '_IRFFNHiddenFunctionBackward'



# ----------------------------------------------------------------------------- the whole IRFFN
class _IRFFN(_Hidden):
    """The IRFFN layers with the last BatchNorm."""

    def __init__(self, dims, ratio=4):
        super().__init__(dims, ratio)
        self.norm3 = nn.BatchNorm2d(dims)

    def layers(self):
        return super().layers() + (self.norm3, )

    def forward(self, x):
        return irffn(x, *self.layers())


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_irffn_in_eval_folds_the_last_two_batchnorms_into_fc2(dtype):
    m = _randomised(_IRFFN(6)).to(dtype).eval()
    x = torch.randn(2, 5, 7, 6, dtype=dtype, requires_grad=True)
    with attention_form('fast'):
        assert choose('irffn', x, *m.layers()).name == 'irffn_folded'
        out = irffn(x, *m.layers())
    with attention_form('reference'):  # the layers one by one
        assert choose('irffn', x, *m.layers()).name == 'irffn_layers'
        ref = irffn(x, *m.layers())
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(out, ref, atol=tol, rtol=tol)
    # exact gradients too (eval with a gradient: frozen BatchNorms, memory-lean off)
    g = torch.randn_like(ref)
    params = [x, *m.parameters()]
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        assert torch.allclose(a, b, atol=tol * 10, rtol=tol * 10)
    # what an exporter sees: one BatchNorm left (the first; a 3x3 zero-padded conv follows it)
    with torch.no_grad(), attention_form('traceable'):
        graph = str(torch.jit.trace(m, x.detach()).inlined_graph)
    assert graph.count('aten::batch_norm') == 1 and 'aten::addcmul' in graph


def test_irffn_does_not_fold_batchnorms_that_train_or_sync():
    m = _randomised(_IRFFN(4))
    x = torch.randn(1, 3, 3, 4)
    with attention_form('fast'):
        for bn in (m.norm1, m.norm2, m.norm3):
            m.eval()
            bn.train()  # one BatchNorm still updating its statistics
            assert choose('irffn', x, *m.layers()).name == 'irffn_layers'
        m.eval()
        m.norm3 = nn.SyncBatchNorm.convert_sync_batchnorm(m.norm3)
        assert choose('irffn', x, *m.layers()).name == 'irffn_layers'


def test_irffn_lean_form_keeps_the_lean_hidden_function_with_frozen_batchnorms():
    m = _randomised(_IRFFN(4)).eval()  # norm_eval: frozen statistics, trained weights
    x = torch.randn(1, 3, 3, 4, requires_grad=True)
    assert choose('irffn', x, *m.layers()).name == 'irffn_layers'  # lean: the fixture
    out = irffn(x, *m.layers())
    names = set()
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    assert '_IRFFNHiddenFunctionBackward' in names


def test_gelu_bn_function_equals_the_module_pair():
    from mmvit_ext.models.layers.gelu_bn import gelu_bn, gelu_bn_plain
    for training, memory_format in ((True, torch.contiguous_format), (True, torch.channels_last),
                                    (False, torch.contiguous_format)):
        bn = _randomised(nn.BatchNorm2d(5)).double().train(training)
        bn_ref = copy.deepcopy(bn)
        x = torch.randn(2, 5, 6, 7, dtype=torch.float64).to(memory_format=memory_format)
        x.requires_grad_()
        out = gelu_bn(x, bn)
        assert type(out.grad_fn).__name__ == '_GeluBNFunctionBackward'
        with attention_form('fast'):
            ref = gelu_bn_plain(x, bn_ref)
        assert torch.allclose(out, ref, atol=1e-12)
        g = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(out, [x, bn.weight, bn.bias], g),
                        torch.autograd.grad(ref, [x, bn_ref.weight, bn_ref.bias], g)):
            assert torch.allclose(a, b, atol=1e-10)
        for a, b in zip(bn.buffers(), bn_ref.buffers()):
            assert torch.equal(a, b)
        params = [bn.weight, bn.bias]
        kept = saved_activation_bytes(lambda: gelu_bn(x, bn), params)
        with attention_form('fast'):
            both = saved_activation_bytes(lambda: gelu_bn_plain(x, bn_ref), params)
        assert kept <= x.numel() * 8 + 1024 < both
