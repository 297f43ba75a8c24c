"""Backbones side by side with mmdet's Swin-T: time and peak memory, one process per case.

    python tools/analysis_tools/benchmark_backbones.py [--models dilateformer-t swin-t]
        [--shape 800 1344] [--batch 1] [--mode fwd|fwdbwd] [--device cpu] [--threads 1]

Ratios are relative to the last model given (Swin-T by default).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.bench_cases import BACKBONES  # noqa: E402
from mmvit_ext.analysis.benchmark import format_table, run_case_in_subprocess  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--models', nargs='+', default=['dilateformer-t', 'swin-t'],
                   choices=sorted(BACKBONES))
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1344], metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--mode', default='fwd', choices=['fwd', 'fwdbwd'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    results = []
    for name in args.models:
        case = dict(kind='backbone', model=name, mode=args.mode, size=args.shape, batch=args.batch,
                    device=args.device, threads=args.threads, repeat=args.repeat, warmup=0)
        results.append(run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case))
    base = results[-1]
    rows = [{'backbone': r['model'], 'time ms': f'{r["time_ms"]:.0f}',
             'peak MB': f'{r["peak_mb"]:.0f}',
             f'time / {base["model"]}': f'{r["time_ms"] / base["time_ms"]:.2f}',
             f'memory / {base["model"]}': f'{r["peak_mb"] / max(base["peak_mb"], 1e-9):.2f}'}
            for r in results]
    print(f'{args.mode}, B={args.batch}, {args.shape[0]}x{args.shape[1]}, {args.device}, '
          f'threads={args.threads}, best of {args.repeat}')
    print(format_table(rows, list(rows[0])))


if __name__ == '__main__':
    main()
