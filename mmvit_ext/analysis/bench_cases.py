"""Benchmark cases, one per process: :func:`run_child` in a process forked for the case by
:func:`~.benchmark.run_case_in_subprocess`, or ``python -m mmvit_ext.analysis.bench_cases --child
JSON`` by hand.

Case kinds:
  * ``attention``: an attention operator at a feature-map shape, forward or forward+backward:
    ``msda`` / ``msda_reference`` / ``msda_natten`` (DilateFormer; NATTEN needs CUDA and the
    ``natten`` package, and is checked against the built-in form before it is timed), ``sg_hybrid`` / ``sg_guided`` and their
    ``_reference`` forms (SG-Former H and G blocks, a whole attention module each);
    ``qna`` / ``qna_reference`` (QnA layer: fast / unfold) and ``local_unfold`` (the usual
    per-pixel-query local attention by unfold) at window ``kernel``.
  * ``backbone``: a backbone (``model``: e.g. ``dilateformer-t`` or ``swin-t`` from mmdet) at an
    image shape, in ``precision`` fp32 or under autocast (fp16 / bf16); forward in eval mode
    without gradient, or forward+backward in train mode (then also the activations kept for
    backward, ``saved_mb``).
  * ``flops``: the backbone's FLOPs (MACs) at an image shape, with the project's counter.
"""
import argparse
import contextlib
import json

import torch

from .benchmark import measure, saved_activation_bytes

PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}

BACKBONES = {
    'dilateformer-t': dict(type='DilateFormer', arch='tiny'),
    'dilateformer-s': dict(type='DilateFormer', arch='small'),
    'dilateformer-b': dict(type='DilateFormer', arch='base'),
    'sgformer-s': dict(type='SGFormer', arch='small'),
    'sgformer-m': dict(type='SGFormer', arch='medium'),
    'sgformer-b': dict(type='SGFormer', arch='base'),
    # stage 4 global, as in configs/qna/*coco.py and *ade20k*.py
    **{f'qnavit-{short}': dict(type='QnAViT', arch=arch, msa_modes=('window', ) * 3 + ('global', ))
       for short, arch in (('t', 'tiny'), ('t7x7', 'tiny_7x7'), ('s', 'small'), ('b', 'base'))},
    'dgt-t': dict(type='DGT', arch='tiny'),
    'dgt-s': dict(type='DGT', arch='small'),
    'dgt-b': dict(type='DGT', arch='base'),
    # mmdet's own Swin-T, as in configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py
    'swin-t': dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                   num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4, qkv_bias=True,
                   drop_path_rate=0.2, out_indices=(0, 1, 2, 3)),
}


def build_backbone(name):
    """A backbone by its name in :data:`BACKBONES`, or from a config dict (``type`` and args)."""
    if not isinstance(name, dict) and name not in BACKBONES:
        raise KeyError(f'unknown backbone {name!r}; choose from {sorted(BACKBONES)}')
    from mmvit_ext.models.registry import MODELS  # importing mmvit_ext registers our backbones
    # a 'mmdet.' type resolves in mmdet's registry
    return MODELS.build(dict(name if isinstance(name, dict) else BACKBONES[name]))


def sg_attention_case(case):
    """An SG-Former H or G attention module on a ``size`` token grid (stage ``stage``)."""
    from mmvit_ext.attention import sg
    B, C, heads, stage = case['batch'], case['channels'], case['heads'], case.get('stage', 0)
    H, W = case['size']
    dev = case['device']
    if case['op'].replace('_reference', '') == 'sg_hybrid':
        module = sg.HybridScaleAttention(C, heads, (8, 4, 2)[stage]).to(dev)
        fn = lambda x: module(x, (H, W))[0]  # noqa: E731
    else:
        module = sg.SelfGuidedAttention(C, heads, sg.DEFAULT_MERGE_GROUPS[stage]).to(dev)
        sig = torch.rand(B, H, W, device=dev)
        fn = lambda x: module(x, (H, W), sig)  # noqa: E731
    backward = case['mode'] == 'fwdbwd'
    x = torch.randn(B, H * W, C, device=dev, requires_grad=backward)

    def run():
        if backward:
            fn(x).sum().backward()
            x.grad = None
            module.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                fn(x)

    return run


def qna_case(case):
    """The QnA layer or the unfold local attention on a ``size`` NHWC map."""
    from mmvit_ext.attention import qna
    B, C, heads, k = case['batch'], case['channels'], case['heads'], case['kernel']
    dev = case['device']
    x = torch.randn(B, *case['size'], C, device=dev, requires_grad=case['mode'] == 'fwdbwd')
    if case['op'] == 'local_unfold':
        weight = torch.randn(3 * C, C, device=dev, requires_grad=True)
        params = [weight]
        fn = lambda: qna.local_attention_unfold(  # noqa: E731
            x, weight, heads, k, case.get('unfold_products', 'broadcast'))
    else:
        layer = qna.QnAAttention(C, C, heads, k).to(dev)
        params = list(layer.parameters())
        fn = lambda: layer(x)  # noqa: E731

    def run():
        if case['mode'] == 'fwdbwd':
            fn().sum().backward()
            for p in params + [x]:
                p.grad = None
        else:
            with torch.no_grad():
                fn()

    return run


DGA_OPS = ('dga', 'dga_reference', 'dga_routing', 'dga_kmeans', 'global')


def dga_case(case):
    """DG-Attention on ``N`` tokens: fast form, dense masked reference, the routing alone
    (k-means + top-k on given q, k), k-means alone, or global attention (same projections)."""
    from mmvit_ext.attention import dg
    B, C, heads, dev = case['batch'], case['channels'], case['heads'], case['device']
    N = case['size'][0] * case['size'][1]
    glob = case['op'] == 'global'
    module = dg.DynamicGroupAttention(C, heads, 1 if glob else case['groups'],
                                      None if glob else case['topk'],
                                      case.get('kmeans_iters', 3)).to(dev)
    backward = case['mode'] == 'fwdbwd'
    x = torch.randn(B, N, C, device=dev, requires_grad=backward)
    if glob:
        # queries in chunks of 4096: torch's CPU SDPA would otherwise build the whole N x N
        # (36 GB at the stage-1 size of an 800x1344 image); the work is the same
        def fn():
            q, k, v = module._qkv(x)
            out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
                qc, k, v, scale=module.scale) for qc in q.split(4096, dim=1)], dim=1)
            return module.proj(out.reshape(B, heads, N, -1).transpose(1, 2).reshape(B, N, C))
    elif case['op'] in ('dga_routing', 'dga_kmeans'):
        with torch.no_grad():
            q, k, _ = module._qkv(x)
        if case['op'] == 'dga_kmeans':
            fn = lambda: dg.kmeans_groups(q, module.num_groups, module.kmeans_iters)  # noqa: E731
        else:
            fn = lambda: module.routing(x, q, k)  # noqa: E731
    else:
        fn = lambda: module(x)  # noqa: E731

    def run():
        if backward and case['op'] not in ('dga_routing', 'dga_kmeans'):
            fn().sum().backward()
            for p in list(module.parameters()) + [x]:
                p.grad = None
        else:
            with torch.no_grad():
                fn()

    return run


def attention_case(case):
    if case['op'].startswith('sg_'):
        return sg_attention_case(case)
    if case['op'] in DGA_OPS:
        return dga_case(case)
    if case['op'] in ('qna', 'qna_reference', 'local_unfold'):
        return qna_case(case)
    B, C, heads = case['batch'], case['channels'], case['heads']
    H, W = case['size']
    d = C // heads
    dilations = case.get('dilations', [1, 2, 3])
    dev = case['device']
    backward = case['mode'] == 'fwdbwd'
    q, k, v = (torch.randn(B, heads, d, H, W, device=dev, requires_grad=backward)
               for _ in range(3))
    scale = d**-0.5
    if case['op'] == 'msda_natten':
        case['natten_max_abs_diff'] = _natten_difference(q, k, v, dilations, scale)

    def run():
        outs = _msda_per_group(q, k, v, dilations, scale)
        if backward:
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
            q.grad = k.grad = v.grad = None
        return outs

    return run


def _msda_per_group(q, k, v, dilations, scale) -> list:
    """MSDA as DilateFormer runs it: the heads split evenly into one group per dilation, 3x3
    windows; the groups' outputs, in order."""
    from mmvit_ext.attention import msda
    per = q.shape[1] // len(dilations)
    return [msda.dilated_local_attention(q[:, g * per:(g + 1) * per], k[:, g * per:(g + 1) * per],
                                         v[:, g * per:(g + 1) * per], 3, r, scale)
            for g, r in enumerate(dilations)]


def _natten_difference(q, k, v, dilations, scale) -> float:
    """Refuse where NATTEN does not run; else the largest difference between its output and
    gradients and the built-in fast form's, on these inputs."""
    from mmvit_ext.attention import attention_form, choose
    from mmvit_ext.attention.msda.fast import dilated_local_attention_fast
    from mmvit_ext.errors import ConfigValueError
    per = q.shape[1] // len(dilations)
    with attention_form('natten'):
        picked = choose('msda', q[:, :per], k[:, :per], v[:, :per], 3, dilations[0], scale)
    if picked.name != 'natten':
        raise ConfigValueError('msda_natten: NATTEN does not run here; it needs CUDA tensors '
                               '(--device cuda) and `pip install natten` (wheels: natten.org)')
    results = []
    # by name: with MMVIT_NATTEN=1, NATTEN is the 'fast' form itself on CUDA
    for name in (picked.name, dilated_local_attention_fast.__name__):
        qs, ks, vs = (t.detach().clone().requires_grad_() for t in (q, k, v))
        with attention_form(name):
            out = torch.cat(_msda_per_group(qs, ks, vs, dilations, scale), 1)
        grads = torch.autograd.grad(out, (qs, ks, vs), torch.ones_like(out))
        results.append([out.detach()] + [g_.detach() for g_ in grads])
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(*results))


def precision_context(device: str, precision: str = 'fp32'):
    """Nothing for fp32, else autocast to ``precision`` on ``device``'s type."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def backbone_case(case):
    model = build_backbone(case['model']).to(case['device'])
    backward = case['mode'] == 'fwdbwd'
    model.train(backward)
    x = torch.randn(case['batch'], 3, *case['size'], device=case['device'])
    # torch.compile (inductor, this one size): the first call compiles, outside the timed steps
    run_model = torch.compile(model) if case.get('compile') else model

    def forward():
        with precision_context(case['device'], case.get('precision', 'fp32')):
            return run_model(x)

    def run():
        if backward:
            outs = forward()
            sum(o.float().mean() for o in outs).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                forward()

    if backward:  # what training keeps, before anything is timed
        if case.get('compile'):
            run()  # compiles forward and backward: count what the compiled forward keeps
        case['saved_mb'] = saved_activation_bytes(forward, list(model.parameters())) / 2**20
        model.zero_grad(set_to_none=True)
    return run


def flops_case(case):
    from .complexity import count_flops
    model = build_backbone(case['model'])
    result = count_flops(model, input_shape=(3, *case['size']))
    return dict(flops=result['flops'], attention_flops=result['attention_flops'],
                params=result['params'])


def _in_form(run, form: str):
    """``run`` with every operator in ``form`` (the ``*_reference`` cases)."""
    from mmvit_ext.attention import attention_form

    def in_form():
        with attention_form(form):
            return run()

    return in_form


def run_child(case):
    """One case in a fresh process (see :func:`~.benchmark.run_case_in_subprocess`): the case
    with its results added."""
    torch.manual_seed(0)
    if case['device'] == 'cpu':
        torch.set_num_threads(case.get('threads', 1))
    if case['kind'] == 'flops':
        return dict(case, **flops_case(case))
    run = attention_case(case) if case['kind'] == 'attention' else backbone_case(case)
    if case['kind'] == 'attention' and case['op'].endswith('_reference'):
        run = _in_form(run, 'reference')
    if case['kind'] == 'attention' and case['op'] == 'msda_natten':
        run = _in_form(run, 'natten')
    return dict(case, **measure(run, case['device'], case.get('warmup', 1), case.get('repeat', 3)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--child', required=True)
    print(json.dumps(run_child(json.loads(parser.parse_args().child))))


if __name__ == '__main__':
    main()
