"""Export a config's backbone (or classifier) to ONNX and check it with onnxruntime.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --shape H W [--dynamic]
        [--opset 17] [--exporter torchscript|dynamo] [--image IMG] [--out FILE] [--rtol R]

Exports with torch's TorchScript-based exporter (what mmdeploy uses; ``--exporter dynamo`` for
the newer one), runs the file in onnxruntime on a real image (``--image``, or a generated image
of the built-in small dataset), compares every output with PyTorch and prints the difference;
with ``--dynamic`` (height and width free) also at a second size. Exit status 1 when an output
differs by more than ``--rtol`` (relative to the output's largest value).

Detectors and segmentors: their backbone is exported (the whole Mask R-CNN / UperNet needs
mmdeploy's rewriters for NMS, RoIAlign and adaptive pooling). Classifiers are exported whole.
SG-Former and DGT route tokens (a sort, k-means and top-k): where two tokens' scores differ by
float rounding only, PyTorch and onnxruntime may order them differently, which moves a few
outputs; their default tolerance is 5e-2 for that reason (exact ties are broken the same way:
lower index first).
"""
import argparse
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROUTING_FAMILIES = ('SGFormer', 'DGT')


class _Exported(torch.nn.Module):
    """The part that is exported: the backbone, or a classifier's tensor-mode forward."""

    def __init__(self, model, scope):
        super().__init__()
        self.model, self.scope = model, scope

    def forward(self, img):
        if self.scope == 'mmpretrain':
            return self.model(img, mode='tensor')
        return self.model.backbone(img)


def _image(path, shape):
    import cv2
    if path:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f'error: cannot read image {path}')
        img = img[..., ::-1]
    else:  # an image of the built-in small COCO set
        from mmvit_ext.datasets.small import _render, _sample_scene
        rng = np.random.default_rng(0)
        h, w = 480, 640
        img = np.asarray(_render(rng, h, w, _sample_scene(rng, h, w, 3, 80, 200))[0])
    return cv2.resize(np.ascontiguousarray(img), (shape[1], shape[0])).astype(np.float32)


def _tensor(img, cfg):
    pre = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {}
    mean = np.array(pre.get('mean', [123.675, 116.28, 103.53]), np.float32)
    std = np.array(pre.get('std', [58.395, 57.12, 57.375]), np.float32)
    return torch.from_numpy(((img - mean) / std).transpose(2, 0, 1)[None].copy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--dynamic', action='store_true', help='free height and width')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--exporter', choices=['torchscript', 'dynamo'], default='torchscript')
    parser.add_argument('--image')
    parser.add_argument('--out')
    parser.add_argument('--rtol', type=float)
    args = parser.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit('error: onnxruntime is not installed: pip install -r requirements/deploy.txt')
    from mmengine.config import Config

    import mmvit_ext  # noqa: F401
    from mmvit_ext.utils.build import build_model_from_cfg
    from mmvit_ext.utils.runner_setup import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(args.config))
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(cfg)
    if args.checkpoint:
        from mmvit_ext.engine.runner_guards import check_checkpoint_fits
        from mmvit_ext.utils.safe_load import safe_torch_load
        ckpt = safe_torch_load(args.checkpoint, map_location='cpu')
        check_checkpoint_fits(model, ckpt, args.checkpoint, allow_partial=False)
        model.load_state_dict(ckpt.get('state_dict', ckpt))
    module = _Exported(model, scope).eval()
    family = type(model.backbone).__name__
    rtol = args.rtol if args.rtol is not None else (5e-2 if family in ROUTING_FAMILIES else 1e-4)
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    img = _tensor(_image(args.image, args.shape), cfg)
    with torch.no_grad():
        outputs = module(img)
    names = [f'out{i}' for i in range(len(outputs) if isinstance(outputs, (tuple, list)) else 1)]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if args.exporter == 'torchscript':
            axes = {'img': {2: 'height', 3: 'width'}} if args.dynamic else None
            torch.onnx.export(module, (img, ), out, dynamo=False, opset_version=args.opset,
                              input_names=['img'], output_names=names, dynamic_axes=axes)
        else:
            dims = None
            if args.dynamic:
                dims = {'img': {2: torch.export.Dim('height', min=32, max=4096),
                                3: torch.export.Dim('width', min=32, max=4096)}}
            torch.onnx.export(module, (img, ), out, dynamo=True, opset_version=max(args.opset, 18),
                              input_names=['img'], output_names=names, dynamic_shapes=dims)
    print(f'wrote {out} ({family} {"backbone" if scope != "mmpretrain" else "classifier"}, '
          f'{args.exporter} exporter, opset {args.opset}, '
          f'{"dynamic" if args.dynamic else "fixed"} size)')
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    shapes = [tuple(args.shape)]
    if args.dynamic:
        shapes.append((args.shape[0] + 40, args.shape[1] - 24))
    worst = 0.
    for shape in shapes:
        x = _tensor(_image(args.image, shape), cfg)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            ref = module(x)
        ref = ref if isinstance(ref, (tuple, list)) else (ref, )
        diffs = [float(np.abs(g - r.numpy()).max() / max(np.abs(r.numpy()).max(), 1e-12))
                 for g, r in zip(got, ref)]
        worst = max(worst, max(diffs))
        print(f'onnxruntime vs PyTorch at {shape[0]}x{shape[1]}: max relative difference per '
              f'output ' + ', '.join(f'{d:.2e}' for d in diffs))
    if worst > rtol:
        sys.exit(f'error: the exported model differs from PyTorch by {worst:.2e} (> {rtol:.0e})')
    print(f'OK: within {rtol:.0e}' + (' (routing near-ties: see --help)'
                                      if family in ROUTING_FAMILIES else ''))


if __name__ == '__main__':
    main()
