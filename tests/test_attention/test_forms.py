"""The one seam that decides how each operator runs (mmvit_ext.attention.forms)."""
import pytest
import torch
import torch.nn as nn

from mmvit_ext.attention import attention_form, choose, forms, implementations, register
from mmvit_ext.attention.msda import dilated_local_attention
from mmvit_ext.models.layers.irffn import irffn_hidden


def _qkv(requires_grad=False, device='cpu'):
    return [torch.randn(1, 2, 4, 5, 6, device=device, requires_grad=requires_grad)
            for _ in range(3)]


def test_the_default_rule_fast_traceable_lean(monkeypatch):
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', None)  # as without MMVIT_MEMORY_LEAN
    q, k, v = _qkv(requires_grad=True)
    assert choose('msda', q, k, v, 3, 1, 1.).form == 'fast'
    # training, on any device ('meta' stands in for an accelerator): memory-lean
    for device in ('meta', 'cpu'):
        x = torch.randn(2, 6, device=device, requires_grad=True)
        assert choose('dg.attention', x, x, x, None, 1.).form == 'lean'
        with torch.no_grad():  # no gradient: nothing to save memory on
            assert choose('dg.attention', x, x, x, None, 1.).form == 'fast'
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', False)  # MMVIT_MEMORY_LEAN=0
    assert choose('dg.attention', x, x, x, None, 1.).form == 'fast'


def test_torch_compile_gets_the_compiled_forms_and_torch_export_the_traceable(monkeypatch):
    x = torch.randn(1, 5, 6, 8)
    args = (x, torch.randn(2, 8), torch.randn(8, 8), torch.randn(8, 8), torch.zeros(9, 4),
            torch.ones(9, 2, 2), 2, 3)
    q, k, v = _qkv()
    monkeypatch.setattr(forms, 'tracing', lambda: True)
    monkeypatch.setattr(forms, 'compiling', lambda: True)  # torch.compile
    assert choose('qna', *args).form == 'compiled'  # QnA has a compiled form
    assert choose('msda', q, k, v, 3, 1, 1.).form == 'traceable'  # MSDA compiles its traceable
    # training under torch.compile: the memory-lean form first, as in eager training
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', None)
    grad_args = (x.requires_grad_(), *args[1:])
    assert choose('qna', *grad_args).form == 'lean'
    # ... and the lean one that recomputes the compiled core (inductor's padded depthwise
    # convolutions run NCHW, 1.6x the compiled step), while eager recomputes the fast core
    assert choose('qna', *grad_args).name == 'qna_attention_lean_compiled'
    monkeypatch.setattr(forms, 'compiling', lambda: False)
    monkeypatch.setattr(forms, 'tracing', lambda: False)
    assert choose('qna', *grad_args).name == 'qna_attention_lean'
    monkeypatch.setattr(forms, 'tracing', lambda: True)
    monkeypatch.setattr(forms, 'compiling', lambda: True)
    assert choose('msda', *_qkv(requires_grad=True), 3, 1, 1.).form == 'traceable'  # none lean
    with torch.no_grad():
        assert choose('qna', *grad_args).form == 'compiled'
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', False)  # MMVIT_MEMORY_LEAN=0
    assert choose('qna', *grad_args).form == 'compiled'
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', None)
    monkeypatch.setattr(forms, 'compiling', lambda: False)  # torch.export, an ONNX exporter
    assert choose('qna', *args).form == 'traceable'
    assert choose('qna', *grad_args).form == 'traceable'



def test_on_an_old_dynamo_the_lean_forms_with_object_arguments_step_aside(monkeypatch):
    """torch < 2.5's dynamo cannot trace an autograd function or checkpoint given modules or a
    routing tuple (DGT's lean forms): under its torch.compile the next form runs; eager training
    and a newer torch keep the lean forms."""
    from mmvit_ext.attention.dg.routing import DGRouting
    flat = [t.reshape(-1, *t.shape[-2:]) for t in _qkv(requires_grad=True)]  # (BH, N, d)
    BH, N = flat[0].shape[:2]
    routing = DGRouting(torch.zeros(BH, N, dtype=torch.long),
                        torch.arange(4).expand(BH, 1, 4))
    args = (*flat, routing, 0.5)
    monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', None)
    monkeypatch.setattr(forms, 'tracing', lambda: True)
    monkeypatch.setattr(forms, 'compiling', lambda: True)
    for old, expected in ((False, 'grouped_attention_lean'),
                          (True, 'grouped_attention_explicit_softmax')):  # its compiled form
        monkeypatch.setattr(forms, '_OLD_DYNAMO', old)
        assert choose('dg.attention', *args).name == expected
    monkeypatch.setattr(forms, 'tracing', lambda: False)  # eager training, old torch
    monkeypatch.setattr(forms, 'compiling', lambda: False)
    assert choose('dg.attention', *args).form == 'lean'


def test_a_compiled_qna_layer_runs_the_compiled_form_and_equals_eager():
    from mmvit_ext.attention.qna import QnAAttention, compiled
    calls = []
    layer = QnAAttention(8, 8, 2, 3).eval()
    original = compiled.qna_core

    def counting(*a, **kw):
        calls.append(kw.get('explicit_padding'))
        return original(*a, **kw)

    compiled.qna_core = counting
    try:
        torch._dynamo.reset()
        x = torch.randn(1, 6, 7, 8)
        with torch.no_grad():
            out = torch.compile(layer, backend='eager')(x)
    finally:
        compiled.qna_core = original
    assert calls == [True]  # traced once, through the compiled form (torch 2.1 included)
    with torch.no_grad():
        assert torch.allclose(out, layer(x), atol=1e-5)


def test_tracers_get_the_traceable_forms_without_being_asked():
    class Wrap(nn.Module):
        def forward(self, q, k, v):
            return dilated_local_attention(q, k, v, 3, 2, 0.5)

    traced = torch.jit.trace(Wrap(), tuple(_qkv()))
    assert '_DilatedLocalAttention' not in str(traced.inlined_graph)  # the fast form's function
    with attention_form('fast'):  # asked for explicitly (the FLOP counter): the request wins
        traced = torch.jit.trace(Wrap(), tuple(_qkv()))
    assert '_DilatedLocalAttention' in str(traced.inlined_graph)

    class Irffn(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 8), nn.BatchNorm2d(8),
                                         nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.BatchNorm2d(8),
                                         nn.Linear(8, 4)])

        def forward(self, t):
            return irffn_hidden(t, *self.layers)

    graph = str(torch.jit.trace(Irffn(), torch.randn(1, 3, 3, 4, requires_grad=True))
                .inlined_graph)
    assert '_IRFFNHiddenFunction' not in graph and 'batch_norm' in graph


def test_blocks_nest_and_unknown_forms_are_refused():
    q, k, v = _qkv()
    with attention_form('reference'):
        assert choose('msda', q, k, v, 3, 1, 1.).form == 'reference'
        with attention_form('traceable'):
            assert choose('msda', q, k, v, 3, 1, 1.).form == 'traceable'
        assert choose('msda', q, k, v, 3, 1, 1.).form == 'reference'
        # an operator without the form asked for runs its fast one
        assert choose('zero_pad', q, (0, 0)).form == 'fast'
    assert forms.requested_forms() == ()
    with pytest.raises(ValueError, match='attention_form takes forms'):
        with attention_form('quick'):
            pass
    with pytest.raises(KeyError, match="no operator 'nope'"):
        choose('nope')


def test_a_backend_is_one_registration_and_wins_where_available():
    """What adding a backend takes (docs/en/architecture.md): register it under a form, with
    a priority and an availability test; the seam picks it where it can run."""
    calls = []
    before = [e.name for e in implementations('msda')['fast']]

    @register('msda', 'fast', name='test_backend', priority=10,
              available=lambda q, *a: q.dtype == torch.float64)
    def test_backend(q, k, v, kernel_size, dilation, scale):
        calls.append(q.dtype)
        return torch.zeros_like(q)

    try:
        q, k, v = _qkv()
        dilated_local_attention(q, k, v, 3, 1, 1.)  # float32: not available, our own fast form
        assert calls == []
        out = dilated_local_attention(q.double(), k.double(), v.double(), 3, 1, 1.)
        assert calls == [torch.float64] and not out.any()
        with attention_form('reference'):  # the reference is still the reference
            dilated_local_attention(q.double(), k.double(), v.double(), 3, 1, 1.)
        assert len(calls) == 1
    finally:
        forms._TABLE['msda']['fast'] = [e for e in forms._TABLE['msda']['fast']
                                        if e.name != 'test_backend']
    assert [e.name for e in implementations('msda')['fast']] == before


def test_every_operator_has_a_fast_form():
    for op in forms._TABLE:
        assert implementations(op).get('fast'), op


def test_the_seams_choice_does_not_break_a_compiled_graph():
    """Dynamo traces through ``choose`` (on torch 2.1 it broke the graph on the look-up of a
    compiler test that torch 2.1 lacks)."""
    import torch._dynamo
    from mmvit_ext.attention.qna import QnAAttention
    layer = QnAAttention(8, 8, 2, 3).eval()
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(layer)(torch.randn(1, 6, 6, 8))
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1
