"""Check a config's model under torch.export, torch.compile and TorchScript against eager PyTorch,
on a device (CPU or CUDA).

    python tools/deployment/check_parity.py CONFIG [CONFIG ...] [--checkpoint FILE]
        [--device cuda] [--backbone] [--shape H W] [--check-shape H W]
        [--checks export compile trace] [--image IMG] [--rtol R]

Per config, in tensor mode (``mmvit_ext.deployment``: the whole Mask R-CNN / UperNet /
classifier, or the backbone with ``--backbone``):

- ``export``: ``torch.export`` with free height and width from an H x W example; the program runs
  at H x W and at the check size;
- ``compile``: ``torch.compile(dynamic=True)`` (inductor: C++ on the CPU, Triton on CUDA), run at
  both sizes;
- ``trace``: ``torch.jit.trace`` at H x W, saved and loaded again, run at H x W.

Each output is compared with eager PyTorch on the same device and input; a check passes within
``--rtol`` (1e-4, relative to the output's largest value), or at a routing near-tie (SG-Former's
sort, DGT's k-means and top-k, a detector's top-k and NMS), where eager itself moves by more
than 1e-4 under rounding-size changes (1e-5 input changes; for routing models also its plain
forms, the arithmetic tracers see), if it is no further from eager than that (the rule of
``export_onnx.py``, which also pairs up a detector's proposals that tie within 1e-5 and came in
the other order). Prints a line per check and size, and exits with 1 if any check fails.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

CHECKS = ('export', 'compile', 'trace')


def _judge(module, x, got, ref, rtol):
    """(worst difference, drift or None, verdict) with export_onnx.py's near-tie rule."""
    from mmvit_ext.deployment import near_tie, output_differences, self_drift
    worst = max(output_differences(module, got, ref))
    if worst <= rtol:
        return worst, None, 'ok'
    drift = self_drift(module, x, ref)
    if near_tie(worst, drift):
        return worst, drift, 'routing near-tie'
    return worst, drift, 'FAILED'


def _runners(check, module, example):
    """``check`` -> a function of the input (built once, timed by the caller)."""
    from mmvit_ext.deployment import export_program, export_rewrites
    if check == 'export':
        return export_program(module, example).module()
    if check == 'compile':
        compiled = torch.compile(module, dynamic=True)

        def run(x):
            with export_rewrites(None):  # NMS / RoIAlign as operators the tracer takes
                return compiled(x)
        return run
    with export_rewrites(None), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TracerWarnings of size-dependent Python branches
        traced = torch.jit.trace(module, example, check_trace=False)
    with tempfile.TemporaryDirectory() as tmp:
        torch.jit.save(traced, osp.join(tmp, 'model.pt'))
        return torch.jit.load(osp.join(tmp, 'model.pt'), map_location=example.device)


def check_config(config, args) -> bool:
    from mmvit_ext.deployment import as_tuple, build_for_export, example_input, exportable
    cfg, model, scope = build_for_export(config, args.checkpoint)
    try:
        module = exportable(model, scope, whole=not args.backbone).to(args.device)
    except NotImplementedError as err:
        sys.exit(f'error: {err}')
    name = f'{type(model.backbone).__name__} {module.kind}'
    sizes = [tuple(args.shape),
             tuple(args.check_shape or (args.shape[0] + 40, args.shape[1] - 24))]
    inputs = {s: example_input(args.image, s, cfg).to(args.device) for s in sizes}
    with torch.no_grad():
        refs = {s: as_tuple(module(x)) for s, x in inputs.items()}
    ok = True
    for check in args.checks:
        start = time.perf_counter()
        try:
            run = _runners(check, module, inputs[sizes[0]])
        except Exception as err:  # noqa: BLE001 - reported, counted as a failure
            print(f'{config}: {name}, {check}: FAILED to build: {type(err).__name__}: '
                  f'{str(err).strip().splitlines()[0] if str(err).strip() else ""}')
            ok = False
            continue
        for size in sizes if check != 'trace' else sizes[:1]:
            x = inputs[size]
            try:
                with torch.no_grad():
                    got = as_tuple(run(x))
            except Exception as err:  # noqa: BLE001
                print(f'{config}: {name}, {check} at {size[0]}x{size[1]}: FAILED to run: '
                      f'{type(err).__name__}: {str(err).strip()[:300]}')
                ok = False
                continue
            worst, drift, verdict = _judge(module, x, got, refs[size], args.rtol)
            ok &= verdict != 'FAILED'
            drift_text = '' if drift is None else f" (eager's own rounding drift: {drift:.2e})"
            print(f'{config}: {name}, {check} at {size[0]}x{size[1]} on {args.device}: max '
                  f'relative difference {worst:.2e}{drift_text}: {verdict}', flush=True)
        print(f'  {check}: {time.perf_counter() - start:.1f} s', flush=True)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('configs', nargs='+', metavar='CONFIG')
    parser.add_argument('--checkpoint', help='one checkpoint (with a single config)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--backbone', action='store_true', help='the backbone alone')
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 320), metavar=('H', 'W'))
    parser.add_argument('--check-shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='the second size (default H+40 x W-24)')
    parser.add_argument('--checks', nargs='+', choices=CHECKS, default=list(CHECKS))
    parser.add_argument('--image', help="an image file, or 'noise' (default: an image of the "
                                        'built-in small COCO set)')
    parser.add_argument('--rtol', type=float, default=1e-4)
    args = parser.parse_args()
    if args.checkpoint and len(args.configs) > 1:
        parser.error('--checkpoint goes with a single config')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit(f'error: --device {args.device} but this torch build sees no CUDA device '
                 f'(torch {torch.__version__}); use --device cpu')
    import mmvit_ext  # noqa: F401
    results = [check_config(config, args) for config in args.configs]
    failed = [c for c, ok in zip(args.configs, results) if not ok]
    if failed:
        sys.exit(f'error: checks failed for {", ".join(failed)}')
    print(f'OK: {len(results)} config(s), {", ".join(args.checks)} within {args.rtol:.0e} '
          f'of eager on {args.device} (or at a routing near-tie)')


if __name__ == '__main__':
    from mmvit_ext.utils.errors import one_line_refusals
    with one_line_refusals():
        main()
