"""Export a config's model to ONNX and check it with onnxruntime against PyTorch.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --shape H W [--dynamic]
        [--backbone] [--opset 17] [--exporter torchscript|dynamo] [--image IMG]
        [--check-shape H W] [--no-optimize] [--out FILE] [--rtol R]

Writes the whole model in tensor mode (``mmvit_ext.deployment``): a Mask R-CNN config gives
proposals and the box and mask heads' outputs of one image, an UperNet config the segmentation
logits, a classifier config the class scores; ``--backbone`` writes the backbone
alone. Exports with torch's TorchScript-based exporter (what mmdeploy uses; ``--exporter dynamo``
for the newer one, from a ``torch.export`` program; with both, NMS and RoIAlign become ONNX's
``NonMaxSuppression`` and ``RoiAlign``, see ``mmvit_ext.deploy_ops``), runs the file in
onnxruntime on a real image (``--image``, or a generated image of the built-in small dataset),
compares every output with PyTorch and prints the difference; with ``--dynamic`` (height and
width free) also at a second size (``--check-shape``, default H+40 x W-24). Exit status 1 when
an output differs by more than ``--rtol`` (1e-4, relative to the output's largest value).

Routing (SG-Former's significance sort, DGT's k-means and top-k, a detector's top-k and NMS) is
discontinuous: where two scores differ by float rounding only, any two runtimes - and PyTorch
itself, on an input changed by 1e-5 - may pick differently. So the tool also measures PyTorch's
own drift under four 1e-5 input perturbations (and, for models that route, between its fast and
plain attention forms: the exporters' arithmetic). When that drift exceeds 1e-4, the input is at a
routing near-tie: the exported model passes if it is no further from PyTorch than
PyTorch is from itself (and says so); on inputs with no near-tie it must match within --rtol.
Exact ties are broken the same way everywhere (lower index first). A detector's proposals whose
scores tie within 1e-5 may come in either order (the same proposals, ranked by a score that
moved in its 7th digit): they are paired up again, with their head outputs, before comparing
(``mmvit_ext.deployment.align_tied_proposals``).
"""
import argparse
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmvit_ext.utils.errors import one_line_refusals  # noqa: E402

with one_line_refusals():  # on torch < 2.5: one line saying which torch it needs
    from mmvit_ext.deployment import (PERTURBATION, as_tuple, example_input, near_tie,
                                      output_differences, self_drift)


def _input(image, shape, cfg):
    try:
        return example_input(image, shape, cfg)
    except FileNotFoundError as err:
        sys.exit(f'error: {err}')


def _fmt(values):
    return ', '.join(f'{v:.2e}' if np.isfinite(v) else 'shape differs' for v in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--dynamic', action='store_true', help='free height and width')
    parser.add_argument('--backbone', action='store_true', help='export the backbone alone')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--exporter', choices=['torchscript', 'dynamo'], default='torchscript')
    parser.add_argument('--image', help="an image file, or 'noise' (default: an image of the "
                        'built-in small dataset, whose flat regions make SG-Former routing ties)')
    parser.add_argument('--check-shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='second size checked with --dynamic (default H+40 x W-24)')
    parser.add_argument('--no-optimize', action='store_true',
                        help="dynamo exporter: skip onnxscript's graph optimizer (minutes on the "
                             'large variants\' whole detectors; the file keeps more nodes)')
    parser.add_argument('--out')
    parser.add_argument('--rtol', type=float, default=1e-4)
    args = parser.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit('error: onnxruntime is not installed: pip install -r requirements/deploy.txt')
    import mmvit_ext  # noqa: F401
    if args.exporter == 'dynamo':
        from mmvit_ext.utils.torch_features import require
        require('the dynamo ONNX exporter')
    from mmvit_ext.deploy_ops import ONNX_TRANSLATIONS
    from mmvit_ext.deployment import (build_for_export, check_detector_opset, export_program,
                                      export_rewrites, exportable)
    cfg, model, scope = build_for_export(args.config, args.checkpoint)
    try:
        module = exportable(model, scope, whole=not args.backbone)
    except NotImplementedError as err:
        sys.exit(f'error: {err}')
    if module.kind == 'detector':
        try:
            check_detector_opset(args.opset)
        except ValueError as err:
            sys.exit(f'error: {err}')
    family = type(model.backbone).__name__
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    img = _input(args.image, args.shape, cfg)
    with export_rewrites(args.opset if module.kind == 'detector' else None):
        with torch.no_grad():
            outputs = as_tuple(module(img))
        names = [f'out{i}' for i in range(len(outputs))]
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if args.exporter == 'torchscript':
                axes = {'img': {2: 'height', 3: 'width'}} if args.dynamic else None
                torch.onnx.export(module, (img, ), out, dynamo=False, opset_version=args.opset,
                                  input_names=['img'], output_names=names, dynamic_axes=axes)
            else:  # from a torch.export program (free height and width with --dynamic)
                program = module
                if args.dynamic:
                    try:
                        program = export_program(module, img)
                    except torch._dynamo.exc.UserError as err:  # constraint violations
                        first = str(err).strip().splitlines()[0]
                        sys.exit(f'error: torch.export cannot keep height and width free from a '
                                 f'{args.shape[0]}x{args.shape[1]} example ({first}): export at '
                                 f'--shape 256 320 or larger (sizes 240..4096 stay free)')
                torch.onnx.export(program, (img, ), out, dynamo=True,
                                  opset_version=max(args.opset, 18), input_names=['img'],
                                  output_names=names, custom_translation_table=ONNX_TRANSLATIONS,
                                  optimize=not args.no_optimize)
        opset = args.opset if args.exporter == 'torchscript' else max(args.opset, 18)
        print(f'wrote {out} ({family} {module.kind}, {args.exporter} exporter, opset {opset}, '
              f'{"dynamic" if args.dynamic else "fixed"} size)')
        session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
        shapes = [tuple(args.shape)]
        if args.dynamic:
            shapes.append(tuple(args.check_shape or (args.shape[0] + 40, args.shape[1] - 24)))
        failed, near_ties = [], []
        for shape in shapes:
            x = _input(args.image, shape, cfg)
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            with torch.no_grad():
                ref = as_tuple(module(x))
            diffs = output_differences(module, got, ref)
            drift = self_drift(module, x, ref)
            print(f'onnxruntime vs PyTorch at {shape[0]}x{shape[1]}: max relative difference per '
                  f'output {_fmt(diffs)}; PyTorch vs itself under a {PERTURBATION:.0e} input '
                  f'perturbation: {_fmt([drift])}')
            worst = max(diffs)
            if worst <= args.rtol:
                continue
            if near_tie(worst, drift):
                print(f'  routing near-tie at {shape[0]}x{shape[1]}: PyTorch itself moves by '
                      f'{_fmt([drift])} under rounding-size input changes, and the exported model '
                      f'is no further from it (see --help)')
                near_ties.append(f'{shape[0]}x{shape[1]}')
                continue
            failed.append(f'{_fmt([worst])} at {shape[0]}x{shape[1]}')
    if failed:
        sys.exit(f'error: the exported model differs from PyTorch by {", ".join(failed)} '
                 f'(> {args.rtol:.0e}) on an input without a routing near-tie')
    tie_note = f' except at a routing near-tie ({", ".join(near_ties)})' if near_ties else ''
    print(f'OK: within {args.rtol:.0e}{tie_note}')


if __name__ == '__main__':
    from mmvit_ext.utils.errors import one_line_refusals
    with one_line_refusals():
        main()
