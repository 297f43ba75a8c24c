"""Run a file of export_onnx.py on an image in onnxruntime or OpenVINO and draw the result.

    python tools/deployment/infer_onnx.py MODEL.onnx IMAGE [--out vis.png] [--score-thr 0.3]
        [--threads N] [--runtime onnxruntime|openvino] [--precision f32|bf16|f16|plugin]

The file's metadata holds the config's test pipeline and class names: the image goes through
the framework's own transforms, the graph, and the paste-back / rescale steps of
docs/en/deployment.md, and comes out as the data sample ``model.predict`` gives (Python:
``mmvit_ext.deployment.OnnxModel(path)(image)``). Prints the results; ``--out`` draws them with
mmdet's / mmseg's / mmpretrain's visualiser.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.utils.cli import one_line_refusals  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('model')
    parser.add_argument('image')
    parser.add_argument('--out', help='draw the result into this file')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections drawn and printed from this score (default 0.3)')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--runtime', choices=('onnxruntime', 'openvino'), default='onnxruntime')
    parser.add_argument('--precision', choices=('f32', 'bf16', 'f16', 'plugin'), default='f32',
                        help="OpenVINO's CPU precision (default f32; 'plugin': the plugin's own "
                        'choice, bf16 on CPUs with bf16, which changes the detections)')
    args = parser.parse_args(argv)
    for path, what in ((args.model, 'model file'), (args.image, 'image')):
        if not osp.isfile(path):
            problem = 'is a folder' if osp.isdir(path) else 'does not exist'
            sys.exit(f'error: {what} {path} {problem}')
    from mmvit_ext.deployment import OnnxModel
    try:
        model = OnnxModel(args.model, threads=args.threads or None, runtime=args.runtime,
                          precision=args.precision)
        # detections below --score-thr are neither printed nor drawn: their masks are never
        # pasted (100 masks of an 8000x8000 image would take 6.4 GB)
        sample = model(args.image, score_thr=args.score_thr)
        print('\n'.join(model.summary(sample, args.score_thr)))
    except ImportError as err:
        sys.exit(f'error: {err}')
    except NotImplementedError as err:  # a backbone export: feature maps, no result
        sys.exit(f'error: {args.model}: {err}')
    if args.out:
        model.show(sample, args.image, args.out, score_thr=args.score_thr)
        print(f'drew the result into {args.out}')


if __name__ == '__main__':
    with one_line_refusals():
        main()
