"""Backbones side by side with mmdet's Swin-T: time, memory and time per FLOP, one process per case.

    python tools/analysis_tools/benchmark_backbones.py
        [--models dilateformer-t qnavit-t dgt-t sgformer-s swin-t] [--shape H W] [--batch B]
        [--modes fwd fwdbwd] [--precisions fp32 fp16 bf16] [--device cuda|cpu]
        [--steps N] [--warmup N] [--threads N] [--compile] [--out-json F] [--out-md F]

Defaults follow the device. CUDA: 800x1344, batch 2, fp32 / fp16 / bf16 (autocast), median of 10
steps after 2 warm-up steps. CPU (a quick check of the same protocol): 400x672, batch 1, fp32,
median of 3 after 1 (bf16 / fp16 matmuls have no fast CPU kernel on most machines).

Each row: median time, peak memory (CUDA: max allocated; CPU: growth of the max RSS), for
forward+backward the activations autograd keeps (``saved MB``, the same count on every device),
the FLOPs (MACs, the project's counter, attention products included) and
``per-FLOP = (time / Swin-T's time) / (FLOPs / Swin-T's FLOPs)``: below 1 means more efficient per
FLOP than mmdet's Swin-T. On the CPU, Swin-T runs again right before every model and each
ratio takes that run (``Swin-T ms``; Swin-T's own row shows the median of its runs): the speed of
a shared or throttled machine drifts over the minutes a table takes. On CUDA, Swin-T runs first
and last and the ratios take the mean of the two. ``--compile`` adds each case under
``torch.compile`` (inductor, the one shape; its first call compiles, outside the timing),
compared with compiled Swin-T; its saved MB counts what the compiled forward keeps, and on the
CPU it shows no peak (the compiler's own memory sets the max RSS).
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.bench_cases import BACKBONES  # noqa: E402
from mmvit_ext.analysis.benchmark import (allocator_setting, format_table,  # noqa: E402
                                          run_case_in_subprocess)

BASELINE = 'swin-t'
DEFAULT_MODELS = ['dilateformer-t', 'qnavit-t', 'dgt-t', 'sgformer-s', BASELINE]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--models', nargs='+', default=DEFAULT_MODELS, choices=sorted(BACKBONES))
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--batch', type=int)
    p.add_argument('--modes', nargs='+', default=['fwd', 'fwdbwd'], choices=['fwd', 'fwdbwd'])
    p.add_argument('--mode', dest='modes', action='store', type=lambda m: [m],
                   help=argparse.SUPPRESS)  # the older single-mode spelling
    p.add_argument('--precisions', nargs='+', choices=['fp32', 'fp16', 'bf16'])
    p.add_argument('--device', help='cuda if available, else cpu')
    p.add_argument('--steps', '--repeat', type=int, dest='steps',
                   help='timed steps (median reported)')
    p.add_argument('--warmup', type=int)
    p.add_argument('--threads', type=int, default=1, help='CPU threads')
    p.add_argument('--compile', action='store_true',
                   help='also time each case under torch.compile (inductor)')
    p.add_argument('--out-json', help='write the rows as JSON')
    p.add_argument('--out-md', help='write the table as Markdown')
    args = p.parse_args(argv)
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    cuda = args.device.startswith('cuda')
    defaults = dict(shape=[800, 1344] if cuda else [400, 672], batch=2 if cuda else 1,
                    precisions=['fp32', 'fp16', 'bf16'] if cuda else ['fp32'],
                    steps=10 if cuda else 3, warmup=2 if cuda else 1)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def run_order(models, cuda):
    """Swin-T first and last on CUDA (clock / thermal drift shows as a difference); on the CPU
    Swin-T runs again right before every model, whose ratio takes that run: a shared or
    throttled machine's speed drifts over the minutes a table takes."""
    order = [m for m in models if m != BASELINE]
    if BASELINE not in models:
        return order
    if cuda:
        return [BASELINE] + order + ([BASELINE] if order else [])
    return [m for name in order for m in (BASELINE, name)] or [BASELINE]


def baseline_runs(results, i):
    """The Swin-T runs that result ``i`` is compared with: on the CPU the one right before it,
    on CUDA all of its group's (first and last)."""
    r = results[i]

    def same(b):
        return (b['model'] == BASELINE and b['mode'] == r['mode']
                and b['precision'] == r['precision'] and b['compile'] == r['compile'])
    if r['device'].startswith('cuda'):
        return [b for b in results if same(b)]
    before = [b for b in results[:i + 1] if same(b)]
    return before[-1:] if r['model'] != BASELINE else [b for b in results if same(b)]


def main(argv=None):
    args = parse_args(argv)
    cuda = args.device.startswith('cuda')
    flops = {}
    for name in dict.fromkeys(args.models):
        case = dict(kind='flops', model=name, size=args.shape, device='cpu', threads=args.threads)
        flops[name] = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)['flops']
    results = []
    for compiled in [False, True] if args.compile else [False]:
        for mode in args.modes:
            for precision in args.precisions:
                for name in run_order(args.models, cuda):
                    case = dict(kind='backbone', model=name, mode=mode, precision=precision,
                                size=args.shape, batch=args.batch, device=args.device,
                                threads=args.threads, repeat=args.steps, warmup=args.warmup,
                                compile=compiled)
                    results.append(run_case_in_subprocess('mmvit_ext.analysis.bench_cases',
                                                          case))
    rows = []
    shown = set()
    for i, r in enumerate(results):
        key = (r['model'], r['mode'], r['precision'], r['compile'])
        if key in shown:  # Swin-T's repeated runs: one row, the median of them
            continue
        shown.add(key)
        base = [b['median_ms'] for b in baseline_runs(results, i)]
        if r['model'] == BASELINE and base:
            base = [sorted(base)[len(base) // 2]]
            r = dict(r, median_ms=base[0])
        row = dict(backbone=r['model'], mode=r['mode'], precision=r['precision'],
                   **({'torch.compile': 'yes' if r['compile'] else 'no'} if args.compile else {}),
                   # compiled on the CPU, the max RSS is the compiler's: no peak shown
                   **{'median ms': f'{r["median_ms"]:.1f}',
                      'peak MB': '-' if r['compile'] and r['device'] == 'cpu'
                      else f'{r["peak_mb"]:.0f}',
                      'saved MB': f'{r["saved_mb"]:.0f}' if 'saved_mb' in r else '-',
                      'GFLOPs': f'{args.batch * flops[r["model"]] / 1e9:.1f}'})
        if base:
            row['Swin-T ms'] = f'{sum(base) / len(base):.1f}'
            t = r['median_ms'] / (sum(base) / len(base))
            f = flops[r['model']] / flops[BASELINE]
            row.update({'FLOPs / Swin-T': f'{f:.2f}', 'time / Swin-T': f'{t:.2f}',
                        'per-FLOP vs Swin-T': f'{t / f:.2f}'})
        rows.append(row)
    for r in results:
        r['flops'] = args.batch * flops[r['model']]
    columns = list(dict.fromkeys(c for row in rows for c in row))
    header = (f'{args.device}, batch {args.batch}, {args.shape[0]}x{args.shape[1]}, median of '
              f'{args.steps} steps after {args.warmup} warm-up' +
              (f', {args.threads} CPU thread(s), {allocator_setting()}' if not cuda else ''))
    print(header)
    table = format_table(rows, columns)
    print(table)
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(dict(setting=header, rows=results), f, indent=1)
    if args.out_md:
        md = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
        md += ['| ' + ' | '.join(str(row.get(c, '')) for c in columns) + ' |' for row in rows]
        with open(args.out_md, 'w') as f:
            f.write(header + '\n\n' + '\n'.join(md) + '\n')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
