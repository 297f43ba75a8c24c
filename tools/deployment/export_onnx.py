"""Export a config's model to ONNX, end to end, and check the file against the framework's own
predictions.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --shape H W [--dynamic]
        [--backbone] [--seg-logits] [--opset 17] [--exporter torchscript|dynamo]
        [--image IMG] [--check-shape H W]... [--runs 5] [--threads N] [--out FILE]
        [--rtol R] [--no-optimize]

What is written (the contract, with names, shapes and frames: docs/en/deployment.md): one
graph from the resized image's pixels to the final results, the data preprocessor and the
post-processing included. A Mask R-CNN / Cascade Mask R-CNN config gives ``dets`` (N, 5),
``labels`` (N) and ``masks`` (N, 28, 28) with the config's score threshold, NMS and
``max_per_img`` inside; an UperNet config the label map (``--seg-logits``: and the logits); a
classifier config the class scores; ``--backbone`` the backbone's feature maps. Batch 1;
``--dynamic`` leaves height and width free. Exporters: torch's TorchScript-based one (what
mmdeploy uses, opset 17 by default) or ``--exporter dynamo`` (from a ``torch.export``
program, opset >= 18). Standard ONNX operators only (NonMaxSuppression, RoiAlign, TopK, ...).

The check runs the file in onnxruntime on a real image (``--image``, or a generated image of
the built-in small dataset) resized to the export size and, with ``--dynamic``, to two more
sizes (``--check-shape``, repeatable; default H+40 x W-24 and H+64 x W+96), and compares:

- detector: final detections with mmdet's ``model.predict`` on the same image, in the original
  image's frame: matched by label, box IoU >= 0.99, score within 1e-3, mask IoU >= 0.98;
  unmatched ones are counted (missing / extra) and fail unless they sit at the score cut or
  are a missing and an extra box of one label and score that overlap each other beyond the
  NMS IoU threshold (NMS kept the other of two near-tied boxes);
- segmentor: the label map with mmseg's ``predict``: >= 99.9% of pixels agree;
- classifier, backbone: every output within ``--rtol`` (1e-4, relative to its largest value)
  of PyTorch, or, for models that route tokens (SG-Former, DGT), a routing near-tie: PyTorch
  itself moves as much under 1e-5 input changes, and the file is no further from it.

The raw outputs' largest relative difference from eager PyTorch is printed too, as a
diagnostic. Then onnxruntime's and eager PyTorch's latency at the export size (median of
``--runs``). Exit status 1 when a check fails.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.utils.cli import one_line_refusals  # noqa: E402

SUPPORTED_OPSETS = range(16, 22)  # RoiAlign's coordinate modes from 16; what onnxruntime runs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--dynamic', action='store_true', help='free height and width')
    parser.add_argument('--backbone', action='store_true', help='export the backbone alone')
    parser.add_argument('--seg-logits', action='store_true',
                        help='segmentors: also output the logits (1, classes, H, W)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--exporter', choices=['torchscript', 'dynamo'], default='torchscript')
    parser.add_argument('--image', help="an image file, or 'noise' (default: a generated image "
                        'of the built-in small dataset)')
    parser.add_argument('--check-shape', type=int, nargs=2, metavar=('H', 'W'),
                        action='append', help='a further size checked with --dynamic '
                        '(repeatable; default H+40 x W-24 and H+64 x W+96)')
    parser.add_argument('--runs', type=int, default=5, help='latency: median of this many runs '
                        '(0: no latency measurement)')
    parser.add_argument('--threads', type=int, default=0,
                        help='onnxruntime and PyTorch threads (0: their defaults)')
    parser.add_argument('--no-optimize', action='store_true',
                        help="dynamo exporter: skip onnxscript's graph optimizer (minutes on the "
                             'large variants\' whole detectors; the file keeps more nodes)')
    parser.add_argument('--out')
    parser.add_argument('--rtol', type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.opset not in SUPPORTED_OPSETS:
        parser.exit(2, f'error: --opset {args.opset} is not supported: use '
                       f'{SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]} (17 is the default)\n')
    if min(args.shape) < 32:
        parser.exit(2, f'error: --shape {args.shape[0]} {args.shape[1]} is too small: at least '
                       f'32 x 32\n')
    return args


def check_paths(args) -> str:
    """The output path; a missing checkpoint, an output that is a folder or a symbolic link to
    a folder are refused in one line before anything is built."""
    if args.checkpoint and '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        what = 'is a folder' if osp.isdir(args.checkpoint) else 'not found'
        sys.exit(f'error: checkpoint {args.checkpoint} {what}')
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    if osp.isdir(out):
        sys.exit(f'error: --out {out} is a folder; give a file name, e.g. '
                 f'{osp.join(out, "model.onnx")}')
    parent = osp.dirname(osp.abspath(out))
    while not osp.exists(parent) and osp.dirname(parent) != parent:
        parent = osp.dirname(parent)  # missing folders are created; the first existing one:
    if not osp.isdir(parent):
        sys.exit(f'error: --out {out} cannot be written: {parent} is a file, not a folder')
    return out


def main(argv=None):
    args = parse_args(argv)
    out = check_paths(args)
    import torch

    import mmvit_ext  # noqa: F401
    if args.exporter == 'dynamo':
        from mmvit_ext.utils.torch_features import require
        require('the dynamo ONNX exporter')
    # first: on torch < 2.5 this ends in one line saying which torch it needs
    from mmvit_ext.deployment import (build_for_export, check_export_memory, check_size,
                                      example_image, export_metadata, export_onnx, exportable,
                                      median_latency, module_input, resized, used_operators)
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit('error: onnxruntime is not installed: pip install -r requirements/deploy.txt')
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, model, scope = build_for_export(args.config, args.checkpoint)
    try:
        module = exportable(model, scope, whole=not args.backbone, seg_logits=args.seg_logits)
    except NotImplementedError as err:
        sys.exit(f'error: cannot export {osp.basename(args.config)}: {err}')
    try:
        image = example_image(args.image)
    except FileNotFoundError as err:
        sys.exit(f'error: {err}')
    problem = check_export_memory(module, image, args.shape)
    if problem:
        sys.exit(f'error: {problem}')
    x = module_input(module, resized(image, args.shape))
    if args.exporter == 'dynamo' and args.dynamic:
        try:
            names = export_onnx(module, x, out, export_metadata(cfg, model, module, scope),
                                'dynamo', args.opset, True, not args.no_optimize)
        except torch._dynamo.exc.UserError as err:  # constraint violations
            first = str(err).strip().splitlines()[0]
            sys.exit(f'error: torch.export cannot keep height and width free from a '
                     f'{args.shape[0]}x{args.shape[1]} example ({first}): export at '
                     f'--shape 256 320 or larger (sizes 240..4096 stay free)')
    else:
        names = export_onnx(module, x, out, export_metadata(cfg, model, module, scope),
                            args.exporter, args.opset, args.dynamic, not args.no_optimize)
    opset = args.opset if args.exporter == 'torchscript' else max(args.opset, 18)
    what = module.task.describe(module)
    print(f'wrote {out} ({type(model.backbone).__name__} {what}, {args.exporter} exporter, '
          f'opset {opset}, {"dynamic" if args.dynamic else "fixed"} size; outputs '
          f'{", ".join(names)})')
    operators = used_operators(out)
    custom = [op for op in operators if '::' in op]
    print(f'operators: {", ".join(operators)}')
    if custom:
        sys.exit(f'error: the file uses non-standard operators {", ".join(custom)}')
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    try:
        session = ort.InferenceSession(out, options, providers=['CPUExecutionProvider'])
    except Exception as err:  # e.g. an operator this onnxruntime lacks
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.exit(f'error: onnxruntime {ort.__version__} cannot run {out}: {first}')

    def run(x):
        return session.run(None, {'input': x.cpu().numpy()})
    shapes = [tuple(args.shape)]
    if args.dynamic:
        h, w = args.shape
        shapes += [tuple(s) for s in (args.check_shape or [(h + 40, w - 24), (h + 64, w + 96)])]
    failed = []
    # a random detector scores every box near a tie (every class ~1/81): matching its
    # detections says nothing about the file, so they are shown, not judged
    judged = bool(args.checkpoint) or module.task.checked_with_random_weights
    for shape in shapes:
        result = check_size(module, model, run, image, shape, args.rtol)
        print(result['line'] + ('' if judged else ' (random weights: shown, not judged)'))
        raw = ', '.join(f'{v:.2e}' if v != float('inf') else 'count differs'
                        for v in result['raw'])
        print(f'  diagnostic: raw outputs vs eager PyTorch, max relative difference {raw}')
        for side, score, label in result.get('match', {}).get('failing', []):
            print(f'  {side}: label {label}, score {score:.4f}')
        if not result['ok'] and judged:
            failed.append(result['size'])
    if args.runs:
        x = module_input(module, resized(image, args.shape))
        onnx_ms = median_latency(lambda: run(x), args.runs)
        with torch.no_grad():
            eager_ms = median_latency(lambda: module(x), args.runs)
        threads = args.threads or 'default'
        print(f'latency at {args.shape[0]}x{args.shape[1]} (median of {args.runs}, {threads} '
              f'threads): onnxruntime {onnx_ms:.1f} ms, PyTorch eager {eager_ms:.1f} ms')
    if failed:
        sys.exit(f'error: the exported model does not match PyTorch at {", ".join(failed)}')
    if not judged:
        print(f'OK: exported {out}; with random weights its detections were not judged (give a '
              'CHECKPOINT to check them against mmdet\'s predict)')
        return
    print('OK: the exported model matches PyTorch at ' + ', '.join(f'{h}x{w}' for h, w in shapes))


if __name__ == '__main__':
    with one_line_refusals():  # on torch < 2.5: one line saying which torch it needs
        main()
