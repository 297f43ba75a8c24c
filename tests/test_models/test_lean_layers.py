"""The memory-lean MLP pieces (GELU -> Linear, GELU -> conv, SG-Former's conv MLP tail,
LayerNorm -> Linear) against
the modules they replace: same values and gradients, fewer activations kept, the same dtypes
under autocast, and the plain modules whenever a hook or dropout is in the way."""
import pytest
import torch
import torch.nn as nn

from mmvit_ext.analysis.benchmark import saved_activation_bytes
from mmvit_ext.attention import attention_form
from mmvit_ext.attention.forms import choose
from mmvit_ext.models.layers import (Mlp, conv_gelu_linear, gelu_conv, gelu_linear,
                                     layer_norm_linear)

ALL = ['gelu_linear', 'gelu_conv', 'conv_gelu_linear', 'layer_norm_linear']


def _cases():
    torch.manual_seed(0)
    gl = (nn.GELU(approximate='tanh'), nn.Linear(12, 5))
    gc = (nn.GELU(), nn.Conv2d(6, 4, 3, 2, 1, groups=2))
    cgl = (nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.GELU(), nn.Linear(8, 3))
    lnl = (nn.LayerNorm(10, eps=1e-6), nn.Linear(10, 40))
    with torch.no_grad():
        lnl[0].weight.normal_()
        lnl[0].bias.normal_()
    return {
        'gelu_linear': (lambda x, m: gelu_linear(x, *m), gl, (2, 7, 12)),
        'gelu_conv': (lambda x, m: gelu_conv(x, *m), gc, (2, 6, 9, 7)),
        'conv_gelu_linear': (lambda x, m: conv_gelu_linear(x, (3, 5), *m), cgl, (2, 15, 8)),
        'layer_norm_linear': (lambda x, m: layer_norm_linear(x, *m), lnl, (2, 7, 10)),
    }


def _grads(fn, x, modules, g):
    params = [p for m in modules for p in m.parameters()]
    out = fn(x, modules)
    return out, torch.autograd.grad(out, [x] + params, g)


@pytest.mark.parametrize('name', ALL)
def test_lean_form_equals_the_modules_and_keeps_one_hidden_activation(name):
    fn, modules, shape = _cases()[name]
    modules = [m.double() for m in modules]
    params = [p for m in modules for p in m.parameters()]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    with attention_form('fast'):
        ref = fn(x, modules)
    g = torch.randn_like(ref)
    with attention_form('lean'):
        out, grads = _grads(fn, x, modules, g)
        assert type(out.grad_fn).__name__.endswith('FunctionBackward')
        kept = saved_activation_bytes(lambda: fn(x, modules), params)
    with attention_form('fast'):
        ref, ref_grads = _grads(fn, x, modules, g)
        plain = saved_activation_bytes(lambda: fn(x, modules), params)
    assert torch.allclose(out, ref, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-10)
    # the input alone (and LayerNorm's per-token mean and inverse deviation); the fast form
    # keeps at least one more activation of its size or more
    stats = 2 * x[..., 0].numel() * 8 if name == 'layer_norm_linear' else 0
    assert kept == x.numel() * 8 + stats < plain


@pytest.mark.parametrize('name', ['gelu_linear', 'gelu_conv', 'conv_gelu_linear'])
def test_lean_form_under_bf16_autocast_has_the_modules_dtypes_and_gradients(name):
    fn, modules, shape = _cases()[name]
    x = torch.randn(shape).bfloat16().requires_grad_()  # what an autocast layer before gives
    results = []
    for form in ('lean', 'fast'):
        with attention_form(form), torch.autocast('cpu', dtype=torch.bfloat16):
            out = fn(x, modules)
        g = torch.ones_like(out)
        params = [p for m in modules for p in m.parameters()]
        grads = torch.autograd.grad(out, [x] + params, g)
        results.append((out, grads))
    (out, grads), (ref, ref_grads) = results
    assert out.dtype == ref.dtype == torch.bfloat16
    assert torch.equal(out, ref)
    for a, b in zip(grads, ref_grads):
        assert a.dtype == b.dtype
        # the same bf16 products, summed in possibly another order
        assert torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize('name', ALL)
def test_a_hooked_module_runs_as_a_module(name):
    fn, modules, shape = _cases()[name]
    x = torch.randn(shape, requires_grad=True)
    seen = []
    handle = modules[-1].register_forward_hook(lambda *a: seen.append(1))
    with attention_form('lean'):
        out = fn(x, modules)
    handle.remove()
    assert seen == [1] and not type(out.grad_fn).__name__.endswith('FunctionBackward')


def test_layer_norm_linear_under_autocast_runs_the_modules():
    norm, fc = nn.LayerNorm(8), nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert choose('layer_norm_linear', x, norm, fc).form == 'fast'
    assert choose('layer_norm_linear', x, norm, fc).form == 'lean'


def test_mlp_with_dropout_in_training_keeps_its_dropout():
    mlp = Mlp(8, 16, drop=0.5).train()
    x = torch.ones(4, 8, requires_grad=True)
    torch.manual_seed(0)
    with attention_form('lean'):
        a = mlp(x)
    torch.manual_seed(0)
    with attention_form('fast'):
        b = mlp(x)
    assert torch.equal(a, b)  # the plain path, same dropout masks
    assert choose('gelu_linear', x, mlp.act, mlp.fc2).form == 'lean'


def _graph_nodes(out):
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(n for n, _ in node.next_functions)
    return {type(n).__name__ for n in seen}


def test_training_uses_the_lean_forms_by_default():
    mlp = Mlp(8, 16).train()
    x = torch.randn(4, 8, requires_grad=True)
    assert '_GeluLinearFunctionBackward' in _graph_nodes(mlp(x))
    with torch.no_grad():
        assert choose('gelu_linear', x, mlp.act, mlp.fc2).form == 'fast'
    with attention_form('traceable'):
        assert '_GeluLinearFunctionBackward' not in _graph_nodes(mlp(x))


@pytest.mark.parametrize('name', ALL)
def test_frozen_weights_get_no_gradient_and_the_input_gets_the_same(name):
    fn, modules, shape = _cases()[name]
    for m in modules:
        m.requires_grad_(False)
    x = torch.randn(shape, requires_grad=True)
    grads = []
    for form in ('lean', 'fast'):
        with attention_form(form):
            out = fn(x, modules)
        grads.append(torch.autograd.grad(out.sum(), x)[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert all(p.grad is None for m in modules for p in m.parameters())


@pytest.mark.parametrize('name', ALL)
def test_compiled_training_keeps_what_the_eager_lean_form_keeps(name, monkeypatch):
    """torch.compile traces a lean form's custom function into its joint graph, and its
    partitioner then chooses what to keep: the plain modules' activations (an MLP's hidden one
    before and after the GELU). Under torch.compile (torch >= 2.5) the lean forms run as
    checkpointed regions, which it must recompute: compiled training keeps no more than eager's
    lean form, less than the compiled modules, with eager's gradients
    (``aot_eager_decomp_partition``: AOTAutograd's decompositions and min-cut partition, as
    inductor, without its C++ build). On torch < 2.5 the conv pieces' custom functions run there
    and keep what they save; the GELU and LayerNorm pairs run as modules."""
    from mmvit_ext.attention import forms
    fn, modules, shape = _cases()[name]
    params = [p for m in modules for p in m.parameters()]
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn_like(fn(x, modules))
    with attention_form('lean'):
        kept_eager = saved_activation_bytes(lambda: fn(x, modules), params)
        grads_eager = _grads(fn, x, modules, g)[1]

    def compiled_run(lean):
        monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', lean)  # None: the default, False: off
        torch._dynamo.reset()
        run = torch.compile(lambda x: fn(x, modules), backend='aot_eager_decomp_partition')
        run(x)  # compile outside the counting hooks
        return saved_activation_bytes(lambda: run(x), params), \
            _grads(lambda x, _: run(x), x, modules, g)[1]

    kept, grads = compiled_run(None)
    kept_plain, _ = compiled_run(False)
    torch._dynamo.reset()
    for a, b in zip(grads, grads_eager):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name
    if forms._OLD_DYNAMO and name in ('gelu_linear', 'layer_norm_linear'):
        assert kept == kept_plain > kept_eager, (kept, kept_plain, kept_eager)  # the modules
    else:  # torch 2.1's compiled custom functions (the conv pieces) keep what they save
        assert kept <= kept_eager < kept_plain, (kept, kept_eager, kept_plain)


def test_the_seam_chooses_the_checkpointed_lean_forms_under_torch_compile(monkeypatch):
    """Under torch.compile of torch >= 2.5 every lean MLP piece runs as a checkpointed region;
    on an older torch the GELU and LayerNorm pairs run as modules and the conv ones as their
    custom functions; under torch.export the fast forms run."""
    from mmvit_ext.attention import forms
    cases = _cases()
    monkeypatch.setattr(forms, 'tracing', lambda: True)
    monkeypatch.setattr(forms, 'compiling', lambda: True)
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', None)
    for old in (False, True):
        monkeypatch.setattr(forms, '_OLD_DYNAMO', old)
        for name in ALL:
            _, modules, shape = cases[name]
            x = torch.randn(*shape, requires_grad=True)
            args = (x, (3, 5), *modules) if name == 'conv_gelu_linear' else (x, *modules)
            chosen = choose(name, *args)
            if not old:
                assert (chosen.form, chosen.name) == ('lean', f'{name}_plain_checkpointed') \
                    or (name, chosen.name) == ('layer_norm_linear',
                                               'layer_norm_linear_lean_compiled'), chosen
            elif name in ('gelu_linear', 'layer_norm_linear'):
                assert chosen.form == 'fast', chosen
            else:
                assert (chosen.form, chosen.name) == ('lean', f'{name}_lean'), chosen
    monkeypatch.setattr(forms, 'compiling', lambda: False)  # torch.export: traceable, else fast
    assert choose('gelu_linear', x.new_zeros(2, 7, 12).requires_grad_(),
                  *cases['gelu_linear'][1]).form == 'fast'
