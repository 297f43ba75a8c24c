"""Fast vs reference attention operators: time and peak memory, one process per case.

    python tools/analysis_tools/benchmark_attention.py [--op msda] [--size 200 336]
        [--channels 72 --heads 3] [--batch 1] [--device cpu] [--threads 1] [--repeat 3]

Default: DilateFormer-T stage-1 MSDA on the stride-4 map of an 800x1344 image (200x336, 72
channels, 3 heads, dilations 1/2/3), forward and forward+backward, unfold reference vs ours.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.benchmark import format_table, run_case_in_subprocess  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--op', default='msda', choices=['msda'])
    p.add_argument('--size', type=int, nargs=2, default=[200, 336], metavar=('H', 'W'))
    p.add_argument('--channels', type=int, default=72)
    p.add_argument('--heads', type=int, default=3)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    rows = []
    for mode in ('fwd', 'fwdbwd'):
        res = {}
        for op in (f'{args.op}_reference', args.op):
            case = dict(kind='attention', op=op, mode=mode, size=args.size, channels=args.channels,
                        heads=args.heads, batch=args.batch, device=args.device,
                        threads=args.threads, repeat=args.repeat)
            res[op] = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)
        ref, fast = res[f'{args.op}_reference'], res[args.op]
        for name, r in ((f'{args.op}_reference (unfold)', ref), (f'{args.op} (ours)', fast)):
            rows.append({'op': name, 'mode': mode, 'time ms': f'{r["time_ms"]:.1f}',
                         'peak MB': f'{r["peak_mb"]:.1f}'})
        rows.append({'op': 'speed-up / memory ratio', 'mode': mode,
                     'time ms': f'{ref["time_ms"] / fast["time_ms"]:.1f}x faster',
                     'peak MB': f'{fast["peak_mb"] / max(ref["peak_mb"], 1e-9):.2f}x of reference'})
    print(f'{args.op}: B={args.batch}, {args.size[0]}x{args.size[1]}, C={args.channels}, '
          f'{args.heads} heads, {args.device}, threads={args.threads}, best of {args.repeat}')
    print(format_table(rows, ['op', 'mode', 'time ms', 'peak MB']))


if __name__ == '__main__':
    main()
