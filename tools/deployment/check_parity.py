"""Check a config's model under torch.export, torch.compile and TorchScript against eager PyTorch,
on a device (CPU or CUDA).

    python tools/deployment/check_parity.py CONFIG [CONFIG ...] [--checkpoint FILE]
        [--device cuda] [--backbone] [--shape H W] [--check-shape H W]
        [--checks export compile trace] [--image IMG] [--rtol R]

Per config, end to end (``mmvit_ext.deployment``: the whole Mask R-CNN / Cascade Mask R-CNN /
UperNet / classifier from pixels to results, or the backbone with ``--backbone``):

- ``export``: ``torch.export`` with free height and width from an H x W example; the program runs
  at H x W and at the check size;
- ``compile``: ``torch.compile(dynamic=True)`` (inductor: C++ on the CPU, Triton on CUDA), run at
  both sizes;
- ``trace``: ``torch.jit.trace`` at H x W, saved and loaded again, run at H x W.

Each is judged as ``export_onnx.py`` judges an ONNX file (the same function,
``mmvit_ext.deployment.check_size``): a detector's final detections against mmdet's
``predict`` (matched by label, box IoU, score and mask IoU), a segmentor's label map against
mmseg's, a classifier's scores and a backbone's features within ``--rtol`` of eager or at a
routing near-tie. Prints a line per check and size, and exits with 1 if any check fails.
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


def _runners(check, module, example):
    """``check`` -> a function of the input (built once, timed by the caller)."""
    from mmvit_ext.deployment import export_program, exporting
    if check == 'export':
        return export_program(module, example).module()
    if check == 'compile':
        compiled = torch.compile(module, dynamic=True)

        def run(x):
            with exporting('compile'):  # the rewrites and forms a compiler needs
                return compiled(x)
        return run
    with exporting('trace'), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TracerWarnings of size-dependent Python branches
        traced = torch.jit.trace(module, example, check_trace=False)
    with tempfile.TemporaryDirectory() as tmp:
        torch.jit.save(traced, osp.join(tmp, 'model.pt'))
        return torch.jit.load(osp.join(tmp, 'model.pt'), map_location=example.device)


def check_config(config, args) -> bool:
    from mmvit_ext.deployment import (build_for_export, check_size, example_image, exportable,
                                      module_input, resized)
    cfg, model, scope = build_for_export(config, args.checkpoint)
    try:
        module = exportable(model.to(args.device), scope, whole=not args.backbone)
    except NotImplementedError as err:
        sys.exit(f'error: cannot export {osp.basename(config)}: {err}')
    name = f'{type(model.backbone).__name__} {module.task.name}'
    sizes = [tuple(args.shape),
             tuple(args.check_shape or (args.shape[0] + 40, args.shape[1] - 24))]
    image = example_image(args.image)
    example = module_input(module, resized(image, sizes[0])).to(args.device)
    ok = True
    for check in args.checks:
        start = time.perf_counter()
        try:
            run = _runners(check, module, example)
        except Exception as err:  # noqa: BLE001 - reported, counted as a failure
            print(f'{config}: {name}, {check}: FAILED to build: {type(err).__name__}: '
                  f'{str(err).strip().splitlines()[0] if str(err).strip() else ""}')
            ok = False
            continue
        for size in sizes if check != 'trace' else sizes[:1]:
            try:
                with torch.no_grad():
                    result = check_size(module, model, run, image, size, args.rtol)
            except Exception as err:  # noqa: BLE001
                print(f'{config}: {name}, {check} at {size[0]}x{size[1]}: FAILED to run: '
                      f'{type(err).__name__}: {str(err).strip()[:300]}')
                ok = False
                continue
            ok &= result['ok']
            print(f'{config}: {name}, {check} on {args.device}: {result["line"]}: '
                  f'{"ok" if result["ok"] else "FAILED"}', flush=True)
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
    print(f'OK: {len(results)} config(s), {", ".join(args.checks)} match eager on {args.device}')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
