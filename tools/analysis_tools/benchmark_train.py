"""Mask R-CNN training iterations side by side with mmdet's Swin-T, through the normal training path.

    python tools/analysis_tools/benchmark_train.py [CONFIG ...] [--amp] [--iters N] [--warmup N]
        [--batch B] [--workers N] [--scale W H] [--data DIR] [--threads N] [--out-json F]

Each config runs in its own process: ``Runner.train()`` on a generated COCO-format set whose
images have 1333x800's aspect ratio, so the config's own pipeline (LoadImage, LoadAnnotations,
Resize to 1333x800, RandomFlip, Pack) feeds the detector 800x1333 images padded to 800x1344;
``--amp`` switches to mmengine's AmpOptimWrapper as ``tools/train.py --amp`` does (CUDA only).
Reported: the median seconds per iteration after the warm-up (data loading, forward, backward,
optimiser step), the peak memory (CUDA: max allocated; CPU: max RSS) and the time relative to
Swin-T. Backbone weights are not loaded.

Defaults: the T/S Mask R-CNN 1x config of each family and mmdet's Swin-T config; on CUDA
batch 2, 4 workers, 20 iterations after 5; on the CPU (a check of the same path) batch 1, the
images resized to 667x400, 3 iterations after 1.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.benchmark import format_table, run_case_in_subprocess  # noqa: E402

SWIN_T = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
DEFAULT_CONFIGS = [
    'configs/dilateformer/mask-rcnn_dilateformer-t_fpn_1x_coco.py',
    'configs/qna/mask-rcnn_qnavit-t_fpn_1x_coco.py',
    'configs/dgt/mask-rcnn_dgt-t_fpn_1x_coco.py',
    'configs/sgformer/mask-rcnn_sgformer-s_fpn_1x_coco.py',
    SWIN_T,
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('configs', nargs='*', default=DEFAULT_CONFIGS)
    p.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper, CUDA)')
    p.add_argument('--iters', type=int, help='timed iterations (median reported)')
    p.add_argument('--warmup', type=int)
    p.add_argument('--batch', type=int)
    p.add_argument('--workers', type=int)
    p.add_argument('--scale', type=int, nargs=2, metavar=('W', 'H'),
                   help="the pipeline's Resize scale (default: the config's own 1333x800 on "
                   'CUDA, 667x400 on the CPU)')
    p.add_argument('--data', default='data/bench', help='where the benchmark set is generated')
    p.add_argument('--threads', type=int, help='CPU threads')
    p.add_argument('--out-json')
    args = p.parse_args(argv)
    import torch
    cuda = torch.cuda.is_available()
    if args.amp and not cuda:
        p.error('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper runs on GPUs only)')
    defaults = dict(iters=20 if cuda else 3, warmup=5 if cuda else 1, batch=2 if cuda else 1,
                    workers=4 if cuda else 0, scale=None if cuda else [667, 400])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = torch.cuda.get_device_name() if cuda else 'cpu'
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmvit_ext.analysis.train_bench import make_bench_coco
    data_root = make_bench_coco(args.data) + '/'
    results = []
    for config in args.configs:
        case = dict(config=config, data_root=osp.abspath(data_root), iters=args.iters,
                    warmup=args.warmup, batch=args.batch, workers=args.workers, amp=args.amp,
                    scale=args.scale, threads=args.threads)
        results.append(run_case_in_subprocess('mmvit_ext.analysis.train_bench', case,
                                              timeout=3600))
    base = [r['median_s'] for r in results if r['config'] == SWIN_T]
    rows = []
    for r in results:
        row = {'config': osp.basename(r['config']), 's / iter': f'{r["median_s"]:.3f}',
               'peak MB': f'{r["peak_mb"]:.0f}'}
        if base:
            row['time / Swin-T'] = f'{r["median_s"] / base[0]:.2f}'
        rows.append(row)
    scale = 'the configs\' own 1333x800' if args.scale is None else \
        f'{args.scale[0]}x{args.scale[1]}'
    header = (f'{args.device}, Mask R-CNN training, batch {args.batch}, '
              f'{"AMP" if args.amp else "fp32"}, images resized to {scale}, median of '
              f'{args.iters} iterations after {args.warmup}, peak memory: '
              f'{results[0]["peak_kind"]}')
    print(header)
    print(format_table(rows, list(rows[0])))
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(dict(setting=header, rows=results), f, indent=1)


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
