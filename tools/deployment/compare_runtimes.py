"""Run a file of export_onnx.py in OpenVINO at each CPU precision and compare with onnxruntime.

    python tools/deployment/compare_runtimes.py MODEL.onnx [IMAGE ...] [--score-thr 0.05]
        [--precisions f32 plugin bf16] [--threads N]

onnxruntime (f32) is the reference. For each OpenVINO precision the final results are compared
as export_onnx.py compares them with PyTorch: a detector's detections matched one to one (label,
box IoU, score gap, mask IoU), a segmentor's label maps pixel by pixel, a classifier's scores.
'plugin' is what OpenVINO's CPU plugin picks without a hint (bf16 on CPUs with AVX512-BF16 or
AMX). Prints the device, the versions and the date with each table (the benchmarks page shows
them), and exits with 1 when the f32 run disagrees with onnxruntime. Without IMAGE: the
built-in example image.
"""
import argparse
import datetime
import os.path as osp
import platform
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.analysis.benchmark import cpu_name as _cpu_name  # noqa: E402
from mmvit_ext.utils.cli import one_line_refusals  # noqa: E402


def compare(got, ref, score_thr: float):
    """(agrees, words) for two data samples of one task."""
    import numpy as np

    from mmvit_ext.deployment import label_agreement, match_detections
    from mmvit_ext.deployment.compare import as_numpy, nearest_drift
    if 'pred_instances' in got:
        m = match_detections(got, ref, score_thr, 100)
        gap, iou = nearest_drift(got, ref)
        words = (f"{m['matched']} of {m['reference']} detections matched; {m['missing']} "
                 f"missing, {m['extra']} extra ({m['at_cut']} of them at the score cut); "
                 f'nearest pairs: scores move by up to {gap:.1e}, boxes down to IoU {iou:.4f}')
        return m['ok'], words
    if 'pred_sem_seg' in got:
        share = label_agreement(got.pred_sem_seg.data, ref.pred_sem_seg.data)
        return share >= 0.999, f'{share:.2%} of the pixels with the same label'
    gap = float(np.abs(as_numpy(got.pred_score) - as_numpy(ref.pred_score)).max())
    return gap <= 1e-3, f'largest score difference {gap:.1e}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('model')
    parser.add_argument('images', nargs='*')
    parser.add_argument('--score-thr', type=float, default=0.05)
    parser.add_argument('--precisions', nargs='+', default=['f32', 'plugin', 'bf16'],
                        choices=('f32', 'bf16', 'f16', 'plugin'))
    parser.add_argument('--threads', type=int, default=0)
    args = parser.parse_args(argv)
    if not osp.isfile(args.model):
        sys.exit(f'error: model file {args.model} does not exist')
    try:
        import onnxruntime
        import openvino
    except ImportError as err:
        sys.exit(f'error: {err.name} is not installed: pip install -r requirements/deploy.txt')
    from mmvit_ext.deployment import OnnxModel, example_image
    images = args.images or [example_image()]
    reference = OnnxModel(args.model, threads=args.threads or None)
    capabilities = openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    print(f'device: {_cpu_name()} (OpenVINO CPU capabilities: {", ".join(capabilities)})')
    print(f'versions: onnxruntime {onnxruntime.__version__}, OpenVINO '
          f'{openvino.__version__.split("-")[0]}, Python {platform.python_version()}; '
          f'{datetime.date.today().isoformat()}')
    print('| OpenVINO precision asked | runs in | image | agrees with onnxruntime | '
          'how close |')
    print('|---|---|---|---|---|')
    f32_agrees = True
    for precision in args.precisions:
        model = OnnxModel(args.model, threads=args.threads or None, runtime='openvino',
                          precision=precision)
        for image in images:
            name = image if isinstance(image, str) else 'example image'
            got, ref = model(image), reference(image)
            agrees, words = compare(got, ref, args.score_thr)
            print(f'| {precision} | {model.session.precision} | {name} | '
                  f'{"yes" if agrees else "no"} | {words} |')
            if precision == 'f32':
                f32_agrees &= agrees
    if not f32_agrees:
        print('FAILED: OpenVINO in f32 disagrees with onnxruntime')
        sys.exit(1)


if __name__ == '__main__':
    with one_line_refusals():
        main()
