"""torch.compile sees each backbone as one graph, and compiles again only when the input size
or the grad mode changes.

Dynamo alone (``torch._dynamo.explain`` and a counting backend, no inductor build), on every
family with one block per stage: each block kind is traced (the graph-break count: 2 s a family;
the recompile count, opt-in with ``-m slow``: 20-27 s). Compiled training runs the memory-lean
forms and gets eager's gradients (AOTAutograd's partition without inductor's C++ build: 12 s a
family). The T and S variants repeat the same blocks. Inductor's own run (parity with eager)
is the opt-in ``-m slow`` check in tests/test_tools/test_deployment.py.
"""
import pytest
import torch

from mmvit_ext.models.registry import MODELS

FAMILIES = {
    'DilateFormer': dict(type='DilateFormer', arch='tiny'),
    'QnAViT': dict(type='QnAViT', arch='tiny', msa_modes=('window', ) * 3 + ('global', )),
    'DGT': dict(type='DGT', arch='tiny'),
    'SGFormer': dict(type='SGFormer', arch='small'),
}


ONE_BLOCK_PER_STAGE = {
    'DilateFormer': dict(depths=(1, 1, 1, 1)),
    'QnAViT': dict(qna_depths=(1, 1, 1, 0), msa_depths=(0, 0, 1, 1)),
    'DGT': dict(depths=(1, 1, 1, 1)),
    'SGFormer': dict(depths=(1, 1, 1, 1)),
}


def _one_block_per_stage(family):
    return MODELS.build(dict(FAMILIES[family], arch_overrides=ONE_BLOCK_PER_STAGE[family]))


def _loss(outs):
    return sum(o.float().mean() for o in outs)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_no_graph_break_inside_a_backbone(family):
    model = _one_block_per_stage(family).train()
    explained = torch._dynamo.explain(model)(torch.randn(1, 3, 128, 160))
    reasons = [str(b.reason)[:300] for b in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


@pytest.mark.slow  # 20-27 s a family: dynamo traces every size symbolically
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_recompiles_only_when_the_size_or_grad_mode_changes(family):
    from torch._dynamo.testing import CompileCounter
    torch._dynamo.reset()
    model = _one_block_per_stage(family).train()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    frames = []
    # a size seen again never compiles again; the second size makes the graph dynamic (torch's
    # automatic dynamic shapes), so a third size compiles again only where the model's own
    # decision changes with the size (DGT: a stage whose token count falls under top-k attends
    # to all keys)
    for size in [(128, 160), (128, 160), (160, 192), (160, 192), (128, 160), (160, 192)]:
        _loss(compiled(torch.randn(1, 3, *size))).backward()
        frames.append(counter.frame_count)
    assert frames == [1, 1, 2, 2, 2, 2], frames
    with torch.no_grad():
        # the grad mode is in torch's guards: compiles again. Without grad, torch's own conv
        # guard (on the element count) can ask for one more at a new size; a repeat never does
        seen = []
        for size in [(128, 160), (128, 160), (160, 192), (160, 192), (128, 160)]:
            compiled(torch.randn(1, 3, *size))
            seen.append(counter.frame_count - frames[-1])
    assert seen[0] == seen[1] >= 1 and seen[2] == seen[3] == seen[4] <= 2, seen
    torch._dynamo.reset()


@pytest.mark.parametrize('family', [
    'DGT', 'QnAViT',  # the lean attention forms; the other two (lean MLPs only) are opt-in
    *(pytest.param(f, marks=pytest.mark.slow) for f in ('DilateFormer', 'SGFormer'))])
def test_compiled_training_runs_the_lean_forms_with_eagers_gradients(family, monkeypatch):
    """Under torch.compile, training keeps what the memory-lean forms keep (at most 1.1x eager
    training's, on torch >= 2.5), not what the compiler's partition of the plain forms would
    (``aot_eager_decomp_partition``: AOTAutograd's decompositions and min-cut partition, as
    inductor, without its C++ build), and gets eager's gradients."""
    from mmvit_ext.analysis.benchmark import saved_activation_bytes
    from mmvit_ext.attention import forms
    x = torch.randn(1, 3, 64, 96)

    def saved_and_grads(lean, compiled):
        monkeypatch.setattr(forms, '_MEMORY_LEAN_ENV', lean)  # None: the default, False: off
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = _one_block_per_stage(family).train()
        run = torch.compile(model, backend='aot_eager_decomp_partition') if compiled else model
        params = list(model.parameters())
        # compile outside the counting hooks (torch 2.1's AOTAutograd failed on their storage
        # look-ups while it traced with fake tensors); eager runs once too, for the same
        # random draws (drop path)
        run(x)
        saved = saved_activation_bytes(lambda: run(x), params)
        model.zero_grad(set_to_none=True)
        _loss(run(x)).backward()
        return saved, [p.grad for p in params if p.grad is not None]

    eager_saved, eager_grads = saved_and_grads(None, False)
    lean_saved, lean_grads = saved_and_grads(None, True)
    assert len(lean_grads) == len(eager_grads)
    scale = max(b.abs().max() for b in eager_grads)
    for a, b in zip(lean_grads, eager_grads):  # float rounding of the decompositions only
        assert (a - b).abs().max() <= 1e-4 * scale, ((a - b).abs().max(), scale)
    if not forms._OLD_DYNAMO:  # what eager training keeps (DGT's partition: 5% more here)
        assert lean_saved <= 1.1 * eager_saved, (lean_saved, eager_saved)
    if family in ('DGT', 'QnAViT'):  # their lean attention and FFN forms keep much less
        plain_saved, _ = saved_and_grads(False, True)
        if family == 'DGT' and forms._OLD_DYNAMO:
            # torch < 2.5 (the oldest stack): DGT's lean forms step aside under torch.compile
            # (their autograd functions take modules), so it compiles at all, keeping what
            # the compiler's partition keeps
            assert lean_saved == plain_saved, (lean_saved, plain_saved)
        else:
            assert lean_saved < 0.75 * plain_saved, (lean_saved, plain_saved, eager_saved)
    torch._dynamo.reset()
