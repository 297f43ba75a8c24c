"""Where a backbone spends its time, by operator group (torch.profiler), forward or training step.

    python tools/analysis_tools/profile_backbone.py sgformer-s [--shape 800 1344] [--batch 1]
        [--mode fwd|fwdbwd] [--precision fp32|fp16|bf16] [--device cpu|cuda] [--threads 1]
        [--top 15] [--baseline swin-t]

Groups: attention (bmm/matmul, fused SDPA and its backward, softmax, our attention ops), linear,
conv, norm, gather/scatter/index (incl. their backward), element-wise, other. On CUDA the shares
are of GPU kernel time, on the CPU of operator self time. Also prints the top operators.

``--baseline swin-t`` profiles mmdet's Swin-T the same way and prints the floor of the model's
time per FLOP against it: the model's matmul groups (linear, attention: the work the FLOP count
measures) run at the baseline's time per FLOP, everything else (element-wise, norm, conv, gathers)
as measured, ``floor = (other time + FLOPs x baseline's matmul time per FLOP) / baseline time /
FLOP ratio``. A model above its floor has matmuls slower per FLOP than the baseline's; the floor
itself is what its non-matmul work costs.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmvit_ext.analysis.bench_cases import (BACKBONES, PRECISIONS, build_backbone,  # noqa: E402
                                            precision_context)

GROUPS = (
    ('attention', ('bmm', 'matmul', 'scaled_dot_product', 'softmax', 'DilatedLocalAttention',
                   'attention', 'fmha', 'flash')),
    ('linear', ('addmm', 'aten::mm', 'linear', 'gemm', 'sgemm', 'cutlass')),
    ('conv', ('convolution', 'conv2d', 'conv_depthwise', 'cudnn', 'winograd')),
    ('norm', ('norm', 'Moments', 'welford')),
    ('gather/scatter/index', ('sort', 'gather', 'scatter', 'index', 'embedding', 'topk',
                              'argmax')),
    ('element-wise', ('gelu', 'add', 'mul', 'div', 'exp', 'copy', 'fill', 'elementwise',
                      'vectorized', 'where', 'cat', 'sum', 'reduce')),
)


def group_of(name):
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return 'other'


MATMUL_GROUPS = ('linear', 'attention')


def profile_step(model_name, args):
    """(total operator time, {group: time}, [(operator, time, calls)]) of one step."""
    cuda = args.device.startswith('cuda')
    torch.manual_seed(0)
    model = build_backbone(model_name).to(args.device)
    model.train(args.mode == 'fwdbwd')  # mmdet's Swin train() returns None: not chained
    x = torch.randn(args.batch, 3, *args.shape, device=args.device)

    def step():
        with precision_context(args.device, args.precision):
            with torch.set_grad_enabled(args.mode == 'fwdbwd'):
                outs = model(x)
        if args.mode == 'fwdbwd':
            sum(o.float().mean() for o in outs).backward()
            model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    from torch.profiler import ProfilerActivity, profile
    step()  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
    if cuda:
        events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
        self_time = lambda e: e.self_device_time_total  # noqa: E731
    else:
        events = [e for e in prof.key_averages()
                  if e.key.startswith('aten::') or 'Python' in e.key or 'Backward' in e.key]
        self_time = lambda e: e.self_cpu_time_total  # noqa: E731
    shares = {}
    for e in events:
        g = group_of(e.key)
        shares[g] = shares.get(g, 0) + self_time(e)
    top = sorted(((e.key, self_time(e), e.count) for e in events), key=lambda t: -t[1])
    return sum(shares.values()), shares, top


def report(model_name, args, total, shares, top):
    cuda = args.device.startswith('cuda')
    what = 'GPU kernel' if cuda else 'operator'
    print(f'{model_name}, {args.batch}x{args.shape[0]}x{args.shape[1]}, {args.mode}, '
          f'{args.precision}, {args.device}' + ('' if cuda else f', threads={args.threads}') +
          f': {total / 1e6:.2f} s of {what} time')
    for g, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f'  {g:22s} {100 * t / total:5.1f}%')
    print(f'top {what}s (self time):')
    for key, t, count in top[:args.top]:
        print(f'  {key[:70]:70s} {100 * t / total:5.1f}%  calls {count}')


def flops_of(model_name, shape):
    from mmvit_ext.analysis.complexity import count_flops
    return count_flops(build_backbone(model_name), input_shape=(3, *shape))['flops']


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('model', choices=sorted(BACKBONES))
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1344], metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--mode', default='fwd', choices=['fwd', 'fwdbwd'])
    p.add_argument('--precision', default='fp32', choices=sorted(PRECISIONS))
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--top', type=int, default=15)
    p.add_argument('--baseline', choices=sorted(BACKBONES),
                   help='also profile this model and print the floor per FLOP against it')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    total, shares, top = profile_step(args.model, args)
    report(args.model, args, total, shares, top)
    if args.baseline:
        b_total, b_shares, b_top = profile_step(args.baseline, args)
        report(args.baseline, args, b_total, b_shares, b_top)
        ratio = flops_of(args.model, args.shape) / flops_of(args.baseline, args.shape)
        matmul = sum(shares.get(g, 0) for g in MATMUL_GROUPS)
        b_matmul = sum(b_shares.get(g, 0) for g in MATMUL_GROUPS)
        measured = total / b_total / ratio
        floor = ((total - matmul) + ratio * b_matmul) / b_total / ratio
        print(f'per FLOP vs {args.baseline} (operator time): {measured:.2f}; floor {floor:.2f} '
              f'(FLOPs {ratio:.2f}x; non-matmul time {100 * (total - matmul) / total:.0f}% '
              f'here, {100 * (b_total - b_matmul) / b_total:.0f}% in {args.baseline})')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
