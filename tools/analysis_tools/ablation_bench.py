"""The attention ablation table: every variant at one FLOP budget, side by side with Swin-T.

    python tools/analysis_tools/ablation_bench.py [--budget 4.5] [--variants V ...]
        [--shape 800 1344] [--batch 1] [--device cpu|cuda] [--threads N] [--repeat 3]
        [--train [--seeds 0 1 2] [--epochs 8] [--data-root DIR]] [--out-dir work_dirs/ablation]

Each variant of ``mmvit_ext.analysis.ablation.VARIANTS`` (or those named) is sized to --budget
GFLOPs at 224x224 (within 2%, the project's counter), then measured: params, FLOPs at 224x224 and
at 1280x800, forward and forward+backward time (median of --repeat after a warm-up, each case in
its own process), the activations kept for backward (saved_mb) and, on CUDA, the peak memory at
--shape; mmdet's own Swin-T is measured in the same run
(its own size: it is the reference, not sized). With --train each variant also trains a Mask R-CNN
on the built-in small COCO-format set with the same schedule for every seed of --seeds, and the
table adds bbox / segm mAP (mean and spread over the seeds). Writes ablation.md, ablation.csv and
ablation.png (time vs small-set mAP, point size = memory; time vs FLOPs without --train) to
--out-dir.

Small-set accuracy checks the pipeline and the ranking on toy data (three shape classes, 64
training images), not COCO.
"""
import argparse
import csv
import os
import os.path as osp
import re
import statistics
import subprocess
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_DET = osp.join(REPO, 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py')
COLUMNS = ['model', 'attention', 'width', 'depths', 'params_m', 'gflops_224', 'gflops_1280x800',
           'fwd_ms', 'fwdbwd_ms', 'saved_mb', 'peak_mb']
TRAIN_COLUMNS = ['bbox_map', 'bbox_map_spread', 'segm_map', 'segm_map_spread']


def _bench(model, args):
    from mmvit_ext.analysis.benchmark import run_case_in_subprocess
    row = {}
    for mode in ('fwd', 'fwdbwd'):
        case = dict(kind='backbone', model=model, mode=mode, batch=args.batch,
                    size=list(args.shape), device=args.device, threads=args.threads,
                    warmup=1, repeat=args.repeat)
        result = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)
        row[f'{mode}_ms'] = round(result['median_ms'], 1)
        if mode == 'fwdbwd':
            # activations kept for backward: measured the same way on every device; the peak
            # is the allocator's on CUDA (on the CPU, ru_maxrss cannot separate one call's peak)
            row['saved_mb'] = round(result['saved_mb'])
            row['peak_mb'] = round(result['peak_mb']) if args.device != 'cpu' else ''
    return row


def _train(name, arch, seed, args, data_root):
    """bbox and segm mAP of a Mask R-CNN with this backbone, trained on the small set."""
    widths = [arch['embed_dims'] * 2**i for i in range(4)]
    work = osp.join(args.out_dir, 'train', f'{name}_seed{seed}')
    os.makedirs(work, exist_ok=True)
    cfg = osp.join(work, 'config.py')
    root = data_root.rstrip('/') + '/'
    with open(cfg, 'w') as f:
        f.write(f'_base_ = {DEMO_DET!r}\n'
                f'model = dict(backbone=dict(_delete_=True, type="AttentionPyramid", '
                f'arch={arch!r}, drop_path_rate=0., init_cfg=None), '
                f'neck=dict(in_channels={widths}))\n'
                f'randomness = dict(seed={seed})\n'
                f'train_cfg = dict(max_epochs={args.epochs}, val_interval={args.epochs})\n'
                f'param_scheduler = [dict(type="LinearLR", start_factor=0.01, by_epoch=False, '
                f'begin=0, end=50), dict(type="MultiStepLR", begin=0, end={args.epochs}, '
                f'by_epoch=True, milestones=[{max(1, int(args.epochs * 0.8))}], gamma=0.1)]\n'
                f'default_hooks = dict(checkpoint=dict(interval={args.epochs}))\n'
                f'train_dataloader = dict(dataset=dict(data_root={root!r}))\n'
                f'val_dataloader = dict(dataset=dict(data_root={root!r}))\n'
                f'test_dataloader = val_dataloader\n'
                f'val_evaluator = dict(ann_file={root + "annotations/instances_val.json"!r})\n'
                f'test_evaluator = val_evaluator\n')
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools/train.py'), cfg, '--work-dir',
                           work], capture_output=True, text=True, env=env, cwd=REPO)
    out = proc.stdout + proc.stderr
    found = {k: re.findall(rf'coco/{k}_mAP: ([0-9.]+)', out) for k in ('bbox', 'segm')}
    if proc.returncode != 0 or not found['bbox'] or not found['segm']:
        raise RuntimeError(f'training {name} (seed {seed}) failed, see {work}:\n{out[-3000:]}')
    return float(found['bbox'][-1]), float(found['segm'][-1])


def _spread(values):
    return round(statistics.stdev(values), 4) if len(values) > 1 else 0.


def _plot(rows, path, trained):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    memory = 'peak_mb' if rows and rows[0].get('peak_mb') != '' else 'saved_mb'
    largest = max(max(r[memory] for r in rows), 1)
    for r in rows:
        y = r['bbox_map'] if trained and 'bbox_map' in r else r['gflops_1280x800']
        if y == '':
            continue
        ax.scatter(r['fwdbwd_ms'], y, s=30 + 400 * r[memory] / largest, alpha=.6)
        ax.annotate(r['model'], (r['fwdbwd_ms'], y), fontsize=8)
    ax.set_xlabel('forward+backward time (ms)')
    ax.set_ylabel('small-set bbox mAP' if trained else 'GFLOPs at 1280x800')
    ax.set_title(f'attention ablation (point size = {memory})')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--budget', type=float, default=4.5, help='GFLOPs (MACs) at 224x224')
    parser.add_argument('--variants', nargs='+', help='default: all')
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='CPU threads')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--no-swin', action='store_true', help="leave out mmdet's Swin-T")
    parser.add_argument('--train', action='store_true', help='add small-set mAP')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--data-root', help='a COCO-format set for --train (default: the '
                        'built-in small set, generated under --out-dir)')
    parser.add_argument('--out-dir', default='work_dirs/ablation')
    args = parser.parse_args()

    import mmvit_ext  # noqa: F401
    from mmvit_ext.analysis.ablation import backbone_flops, size_to_budget, variant_names
    from mmvit_ext.analysis.benchmark import format_table
    try:
        names = variant_names(args.variants)
    except ValueError as err:
        sys.exit(f'error: {err}')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            sys.exit(f'error: --device {args.device} but torch sees no CUDA device; '
                     'use --device cpu')
    os.makedirs(args.out_dir, exist_ok=True)
    data_root = args.data_root
    if args.train and data_root:
        if not osp.isfile(osp.join(data_root, 'annotations', 'instances_val.json')):
            sys.exit(f'error: --data-root {data_root} has no annotations/instances_val.json '
                     '(a COCO-format set with train/, val/ and annotations/, as '
                     'tools/misc/make_small_datasets.py writes)')
    elif args.train:
        from mmvit_ext.datasets.small import make_small_coco
        data_root = osp.join(args.out_dir, 'data', 'small_coco')
        if not osp.isfile(osp.join(data_root, 'annotations', 'instances_val.json')):
            make_small_coco(osp.join(args.out_dir, 'data'))

    rows = []
    for name in names:
        try:
            sized = size_to_budget(name, args.budget)
        except ValueError as err:
            sys.exit(f'error: {err}')
        arch = sized['arch']
        row = dict(model=name, attention='/'.join(arch['attentions']), width=arch['embed_dims'],
                   depths='-'.join(map(str, arch['depths'])),
                   params_m=round(sized['params'] / 1e6, 2),
                   gflops_224=round(sized['flops'] / 1e9, 3),
                   gflops_1280x800=round(backbone_flops(arch, (800, 1280))['flops'] / 1e9, 2))
        row.update(_bench(dict(type='AttentionPyramid', arch=arch, drop_path_rate=0.), args))
        if args.train:
            maps = [_train(name, arch, seed, args, data_root) for seed in args.seeds]
            bbox, segm = [m[0] for m in maps], [m[1] for m in maps]
            row.update(bbox_map=round(statistics.mean(bbox), 4), bbox_map_spread=_spread(bbox),
                       segm_map=round(statistics.mean(segm), 4), segm_map_spread=_spread(segm))
        rows.append(row)
        print(format_table([row], COLUMNS + (TRAIN_COLUMNS if args.train else [])), flush=True)
    if not args.no_swin:
        from mmvit_ext.analysis.bench_cases import BACKBONES, build_backbone
        from mmvit_ext.analysis.complexity import count_flops
        small, large = (count_flops(build_backbone('swin-t'), input_shape=(3, *s))
                        for s in ((224, 224), (800, 1280)))
        row = dict(model='swin-t (mmdet)', attention='swin', width=96, depths='2-2-6-2',
                   params_m=round(small['params'] / 1e6, 2),
                   gflops_224=round(small['flops'] / 1e9, 3),
                   gflops_1280x800=round(large['flops'] / 1e9, 2))
        row.update(_bench(BACKBONES['swin-t'], args))
        if args.train:  # not trained: it is the speed reference (the table says so)
            row.update({k: '' for k in TRAIN_COLUMNS})
        rows.append(row)

    columns = COLUMNS + (TRAIN_COLUMNS if args.train else [])
    table = format_table(rows, columns)
    device = args.device if args.device != 'cpu' else f'cpu ({args.threads} threads)'
    header = (f'Attention ablation at {args.budget:g} GFLOPs (224x224); time and memory at '
              f'{args.shape[0]}x{args.shape[1]}, batch {args.batch}, {device}, median of '
              f'{args.repeat}')
    if args.train:
        header += (f'; small-set mAP over seeds {args.seeds}, {args.epochs} epochs (toy data: '
                   'checks the pipeline and the ranking, not COCO)')
    print('\n' + header + '\n' + table)
    md_rows = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    md_rows += ['| ' + ' | '.join(str(r.get(c, '')) for c in columns) + ' |' for r in rows]
    with open(osp.join(args.out_dir, 'ablation.md'), 'w') as f:
        f.write(header + '\n\n' + '\n'.join(md_rows) + '\n')
    with open(osp.join(args.out_dir, 'ablation.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, osp.join(args.out_dir, 'ablation.png'), args.train)
    print(f'wrote ablation.md, ablation.csv, ablation.png to {args.out_dir}')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
