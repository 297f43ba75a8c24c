"""Where a backbone's forward spends its time, by operator group (torch.profiler, CPU).

    python tools/analysis_tools/profile_backbone.py sgformer-s [--shape 800 1344] [--threads 1]
        [--top 12]

Groups: attention (bmm/matmul, fused SDPA, softmax, our attention ops), linear, conv, norm,
sort/gather, other. Also prints the top operators by self time.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmvit_ext.analysis.bench_cases import BACKBONES, build_backbone  # noqa: E402

GROUPS = (
    ('attention', ('bmm', 'matmul', 'scaled_dot_product', 'softmax', 'DilatedLocalAttention')),
    ('linear', ('addmm', 'aten::mm', 'linear')),
    ('conv', ('convolution', 'conv2d')),
    ('norm', ('norm', )),
    ('sort/gather', ('sort', 'gather', 'scatter')),
)


def group_of(name):
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return 'other'


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('model', choices=sorted(BACKBONES))
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1344], metavar=('H', 'W'))
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--top', type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_backbone(args.model).eval()
    x = torch.randn(1, 3, *args.shape)
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        model(x)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = [e for e in prof.key_averages() if e.key.startswith('aten::') or 'Python' in e.key]
    total = sum(e.self_cpu_time_total for e in events)
    shares = {}
    for e in events:
        g = group_of(e.key)
        shares[g] = shares.get(g, 0) + e.self_cpu_time_total
    print(f'{args.model}, {args.shape[0]}x{args.shape[1]}, forward, threads={args.threads}: '
          f'{total / 1e6:.2f} s of operator time')
    for g, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f'  {g:12s} {100 * t / total:5.1f}%')
    print('top operators (self time):')
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f'  {e.key:55s} {100 * e.self_cpu_time_total / total:5.1f}%  calls {e.count}')


if __name__ == '__main__':
    main()
