"""Fast vs reference attention operators: time and peak memory, one process per case.

    python tools/analysis_tools/benchmark_attention.py [--op msda|sg_hybrid|sg_guided|qna|dga]
        [--size 200 336] [--channels 72 --heads 3] [--stage 0] [--batch 1] [--device cpu]
        [--threads 1] [--repeat 3] [--natten]

Default: DilateFormer-T stage-1 MSDA on the stride-4 map of an 800x1344 image (200x336, 72
channels, 3 heads, dilations 1/2/3), forward and forward+backward, unfold reference vs ours;
``--natten`` adds MSDA through NATTEN (``--device cuda``, ``pip install natten``; run without
``MMVIT_NATTEN=1`` so that "ours" is the built-in form), checked against ours before timing.
``sg_hybrid`` / ``sg_guided``: an SG-Former H / G attention module of stage ``--stage`` (0-2;
use 64 channels, 2 heads for SG-Former-S stage 1), step-by-step reference vs fast form.
``qna``: the QnA layer vs the usual unfold local attention (per-pixel queries) of the same window,
for each of ``--kernels`` (default 3 7 11; QnA-ViT-T stage 1: 64 channels, 8 heads);
``--unfold-products matmul`` computes the baseline's window products as batched matmuls.
``dga``: DG-Attention (``--groups``, ``--topk``) vs global attention vs the dense masked reference
on ``H*W`` tokens, plus k-means alone and k-means + top-k for their share of the time; the
reference is skipped, with its estimated size, when its N x N tensors would exceed
``--max-reference-gb``.
"""
import argparse
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.benchmark import format_table, run_case_in_subprocess  # noqa: E402


def compare_qna(args):
    """QnA vs the usual unfold local attention (per-pixel queries) at each window size."""
    rows = []
    modes = ('fwd', 'fwdbwd') if args.mode == 'both' else (args.mode, )
    for k in args.kernels:
        for mode in modes:
            res = {}
            for op in ('local_unfold', 'qna'):
                case = dict(kind='attention', op=op, mode=mode, size=args.size, kernel=k,
                            channels=args.channels, heads=args.heads, batch=args.batch,
                            device=args.device, threads=args.threads, repeat=args.repeat,
                            unfold_products=args.unfold_products)
                res[op] = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)
            base, ours = res['local_unfold'], res['qna']
            rows.append({'k': k, 'mode': mode, 'unfold ms': f'{base["time_ms"]:.1f}',
                         'qna ms': f'{ours["time_ms"]:.1f}',
                         'speed-up': f'{base["time_ms"] / ours["time_ms"]:.1f}x',
                         'unfold MB': f'{base["peak_mb"]:.1f}', 'qna MB': f'{ours["peak_mb"]:.1f}',
                         'memory': f'{base["peak_mb"] / max(ours["peak_mb"], 1e-9):.1f}x less'})
    print(f'qna vs unfold local attention: B={args.batch}, {args.size[0]}x{args.size[1]}, '
          f'C={args.channels}, {args.heads} heads, {args.device}, threads={args.threads}, '
          f'best of {args.repeat}, unfold products: {args.unfold_products}')
    print(format_table(rows, list(rows[0])))


def compare_dga(args):
    """DG-Attention vs global attention vs the dense reference; k-means' share of the time."""
    n = args.size[0] * args.size[1]
    rows = []
    modes = ('fwd', 'fwdbwd') if args.mode == 'both' else (args.mode, )
    for mode in modes:
        # dense reference, N x N per head: logits, masked logits, probabilities (fp32) and the
        # bool mask; backward adds two more fp32 tensors
        ref_gb = args.batch * args.heads * n * n * (4 * (3 if mode == 'fwd' else 5) + 1) / 1e9
        res = {}
        for op in ('dga', 'dga_routing', 'dga_kmeans', 'global', 'dga_reference'):
            if op in ('dga_routing', 'dga_kmeans') and mode == 'fwdbwd':
                continue  # no gradient flows through the routing
            if op == 'dga_reference' and ref_gb > args.max_reference_gb:
                size = f'{ref_gb:.0f} GB' if ref_gb >= 1 else f'{ref_gb * 1e3:.0f} MB'
                res[op] = f'needs ~{size}'
                continue
            case = dict(kind='attention', op=op, mode=mode, size=args.size, groups=args.groups,
                        topk=args.topk, channels=args.channels, heads=args.heads,
                        batch=args.batch, device=args.device, threads=args.threads,
                        repeat=args.repeat)
            try:
                res[op] = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)
            except RuntimeError as e:  # e.g. global attention's N x N on a CPU: report, go on
                if op == 'dga':
                    raise
                oom = re.search(r'allocate (\d+) bytes', str(e))
                res[op] = (f'out of memory ({int(oom.group(1)) / 1e9:.1f} GB asked)' if oom
                           else 'failed: ' + str(e).strip().splitlines()[-1][:60])
        ours = res['dga']
        for op, label in (('dga', 'DG-Attention (ours)'),
                          ('global', 'global attention (SDPA, 4096-query chunks)'),
                          ('dga_reference', 'dense masked reference')):
            r = res[op]
            if isinstance(r, str):
                rows.append({'op': label, 'mode': mode, 'time ms': 'skipped', 'peak MB': r})
                continue
            rows.append({'op': label, 'mode': mode, 'time ms': f'{r["time_ms"]:.1f}',
                         'peak MB': f'{r["peak_mb"]:.1f}',
                         'vs ours': '' if op == 'dga' else
                         f'{r["time_ms"] / ours["time_ms"]:.1f}x time, '
                         f'{r["peak_mb"] / max(ours["peak_mb"], 1e-9):.1f}x memory'})
        for op, label in (('dga_kmeans', 'of which k-means'),
                          ('dga_routing', 'of which k-means + top-k keys')):
            if op in res:
                share = res[op]['time_ms'] / ours['time_ms']
                rows.append({'op': label, 'mode': mode, 'time ms': f'{res[op]["time_ms"]:.1f}',
                             'vs ours': f'{100 * share:.0f}% of the forward'})
    print(f'DG-Attention: B={args.batch}, N={n} ({args.size[0]}x{args.size[1]}), '
          f'C={args.channels}, {args.heads} heads, {args.groups} groups, top-{args.topk}, '
          f'{args.device}, threads={args.threads}, best of {args.repeat}')
    print(format_table(rows, ['op', 'mode', 'time ms', 'peak MB', 'vs ours']))


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--op', default='msda',
                   choices=['msda', 'sg_hybrid', 'sg_guided', 'qna', 'dga'])
    p.add_argument('--groups', type=int, default=16, help='dga: query groups')
    p.add_argument('--topk', type=int, default=256, help='dga: keys per group')
    p.add_argument('--max-reference-gb', type=float, default=8.,
                   help='dga: skip the dense reference above this estimated size')
    p.add_argument('--kernels', type=int, nargs='+', default=[3, 7, 11],
                   help='qna: window sizes, each compared with the unfold local attention')
    p.add_argument('--unfold-products', default='broadcast', choices=['broadcast', 'matmul'],
                   help='qna: how the unfold baseline forms its window products')
    p.add_argument('--stage', type=int, default=0, choices=[0, 1, 2],
                   help='SG-Former stage of the sg_* ops (sets sr and the merge groups)')
    p.add_argument('--size', type=int, nargs=2, default=[200, 336], metavar=('H', 'W'))
    p.add_argument('--channels', type=int, default=72)
    p.add_argument('--heads', type=int, default=3)
    p.add_argument('--mode', default='both', choices=['fwd', 'fwdbwd', 'both'])
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--natten', action='store_true',
                   help='msda: also time the NATTEN backend (CUDA), side by side with ours')
    args = p.parse_args()
    if args.natten and args.op != 'msda':
        p.error('--natten applies to --op msda only (NATTEN is a backend of MSDA)')
    if args.natten:
        from mmvit_ext.attention.msda.natten_backend import natten_installed
        if not args.device.startswith('cuda') or not natten_installed():
            p.error('--natten needs --device cuda and the natten package (pip install natten; '
                    'prebuilt wheels: natten.org): NATTEN has no CPU kernels')
    if args.op == 'qna':
        return compare_qna(args)
    if args.op == 'dga':
        return compare_dga(args)
    rows = []
    for mode in (('fwd', 'fwdbwd') if args.mode == 'both' else (args.mode, )):
        res = {}
        ops = [f'{args.op}_reference', args.op] + (['msda_natten'] if args.natten else [])
        for op in ops:
            case = dict(kind='attention', op=op, mode=mode, size=args.size, channels=args.channels,
                        heads=args.heads, stage=args.stage, batch=args.batch, device=args.device,
                        threads=args.threads, repeat=args.repeat)
            res[op] = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)
        ref, fast = res[f'{args.op}_reference'], res[args.op]
        ref_name = 'unfold' if args.op == 'msda' else 'loops, explicit softmax'
        for name, r in ((f'{args.op}_reference ({ref_name})', ref), (f'{args.op} (ours)', fast)):
            rows.append({'op': name, 'mode': mode, 'time ms': f'{r["time_ms"]:.1f}',
                         'peak MB': f'{r["peak_mb"]:.1f}'})
        rows.append({'op': 'speed-up / memory ratio', 'mode': mode,
                     'time ms': f'{ref["time_ms"] / fast["time_ms"]:.1f}x faster',
                     'peak MB': f'{fast["peak_mb"] / max(ref["peak_mb"], 1e-9):.2f}x of reference'})
        if args.natten:
            nat = res['msda_natten']
            rows.append({'op': f'msda (NATTEN; max |diff| vs ours {nat["natten_max_abs_diff"]:.1e})',
                         'mode': mode, 'time ms': f'{nat["time_ms"]:.1f}',
                         'peak MB': f'{nat["peak_mb"]:.1f}'})
            rows.append({'op': 'NATTEN / ours', 'mode': mode,
                         'time ms': f'{nat["time_ms"] / fast["time_ms"]:.2f}x',
                         'peak MB': f'{nat["peak_mb"] / max(fast["peak_mb"], 1e-9):.2f}x'})
    print(f'{args.op}: B={args.batch}, {args.size[0]}x{args.size[1]}, C={args.channels}, '
          f'{args.heads} heads, {args.device}, threads={args.threads}, best of {args.repeat}')
    print(format_table(rows, ['op', 'mode', 'time ms', 'peak MB']))


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
