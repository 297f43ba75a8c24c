"""Deployment latency side by side: configs exported end to end, run in onnxruntime and in eager
PyTorch on the same input, with FLOPs and the latency per FLOP relative to the first config.

    python tools/deployment/benchmark_onnx.py CONFIG [CONFIG ...] [--shape 800 1344]
        [--runs 5] [--threads 1 0] [--provider CPUExecutionProvider] [--json FILE]

Put the reference first (e.g. ``mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``). Each
config is built with random weights (seed 0), exported with the TorchScript-based exporter at
the fixed size, and timed on the built-in small dataset's image resized to it: median of
``--runs`` after one warm-up, once per ``--threads`` value (0: onnxruntime's and PyTorch's
defaults, all cores). Random weights make every detector keep ``max_per_img`` detections, so
the mask head runs at its largest, the same for every config. Prints a Markdown table headed
by the device, versions and date (the form of docs/en/benchmarks.md).
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.benchmark import cpu_name as _cpu_name  # noqa: E402
from mmvit_ext.utils.cli import one_line_refusals  # noqa: E402


def measure(config, shape, runs, threads, provider, tmp):
    import onnxruntime as ort
    import torch

    from mmvit_ext.analysis.complexity import config_complexity
    from mmvit_ext.deployment import (build_for_export, example_image, export_metadata,
                                      export_onnx, exportable, median_latency, module_input,
                                      resized)
    cfg, model, scope = build_for_export(config)
    module = exportable(model, scope)
    x = module_input(module, resized(example_image(), shape))
    out = osp.join(tmp, 'model.onnx')
    export_onnx(module, x, out, export_metadata(cfg, model, module, scope), dynamic=False)
    flops = config_complexity(cfg, shape)['flops']
    row = dict(config=config, family=type(model.backbone).__name__, gflops=flops / 1e9,
               onnxruntime_ms={}, eager_ms={})
    default_threads = torch.get_num_threads()
    for n in threads:
        options = ort.SessionOptions()
        if n:
            options.intra_op_num_threads = n
        session = ort.InferenceSession(out, options, providers=[provider])
        feed = {'input': x.numpy()}
        row['onnxruntime_ms'][n] = median_latency(lambda: session.run(None, feed), runs)
        torch.set_num_threads(n or default_threads)
        with torch.no_grad():
            row['eager_ms'][n] = median_latency(lambda: module(x), runs)
        torch.set_num_threads(default_threads)
    return row


def table(rows, threads, shape, runs, provider) -> str:
    import onnxruntime as ort
    import torch
    ref = rows[0]
    head = (f'{_cpu_name()}, {os.cpu_count()} logical cores; {provider}; torch '
            f'{torch.__version__}, onnxruntime {ort.__version__}, Python '
            f'{platform.python_version()}; {datetime.date.today().isoformat()}; input '
            f'{shape[0]}x{shape[1]}, median of {runs} runs, random weights (100 detections)')
    names = [f'{n} thread{"s" if n != 1 else ""}' if n else 'all threads' for n in threads]
    cols = ['config', 'GFLOPs'] + [f'onnxruntime, {n} (ms)' for n in names] + \
        [f'eager PyTorch, {n} (ms)' for n in names] + \
        [f'onnxruntime ms/GFLOP vs first, {n}' for n in names]
    lines = [head, '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        per_flop = [(r['onnxruntime_ms'][n] / r['gflops']) /
                    (ref['onnxruntime_ms'][n] / ref['gflops']) for n in threads]
        cells = [f'`{osp.basename(r["config"])}`', f'{r["gflops"]:.1f}'] + \
            [f'{r["onnxruntime_ms"][n]:.0f}' for n in threads] + \
            [f'{r["eager_ms"][n]:.0f}' for n in threads] + [f'{v:.2f}' for v in per_flop]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('configs', nargs='+', metavar='CONFIG')
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 0],
                        help='thread counts to time (0: all cores)')
    parser.add_argument('--provider', default='CPUExecutionProvider',
                        help='onnxruntime execution provider (e.g. CUDAExecutionProvider)')
    parser.add_argument('--json', help='also write the measurements here')
    args = parser.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit('error: onnxruntime is not installed: pip install -r requirements/deploy.txt')
    if args.provider not in ort.get_available_providers():
        sys.exit(f'error: onnxruntime {ort.__version__} here has no {args.provider} (it has '
                 f'{", ".join(ort.get_available_providers())})')
    import mmvit_ext  # noqa: F401
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            rows.append(measure(config, args.shape, args.runs, args.threads, args.provider, tmp))
            r = rows[-1]
            print(f'{config}: {r["gflops"]:.1f} GFLOPs, onnxruntime '
                  + ', '.join(f'{v:.0f} ms' for v in r['onnxruntime_ms'].values())
                  + ', eager ' + ', '.join(f'{v:.0f} ms' for v in r['eager_ms'].values()),
                  flush=True)
    print(table(rows, args.threads, args.shape, args.runs, args.provider))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(shape=args.shape, runs=args.runs, rows=rows), f, indent=1)


if __name__ == '__main__':
    with one_line_refusals():
        main()
