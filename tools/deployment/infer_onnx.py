"""Run a file written by export_onnx.py on an image in onnxruntime and draw the result.

    python tools/deployment/infer_onnx.py MODEL.onnx IMAGE [--out vis.png] [--score-thr 0.3]
        [--threads N]

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

from mmvit_ext.utils.errors import one_line_refusals  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('model')
    parser.add_argument('image')
    parser.add_argument('--out', help='draw the result into this file')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections drawn and printed from this score (default 0.3)')
    parser.add_argument('--threads', type=int, default=0)
    args = parser.parse_args(argv)
    for path, what in ((args.model, 'model file'), (args.image, 'image')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} {path} does not exist')
    from mmvit_ext.deployment import OnnxModel
    try:
        model = OnnxModel(args.model, threads=args.threads or None)
        sample = model(args.image)
    except (ValueError, RuntimeError, ImportError) as err:
        sys.exit(f'error: {err}')
    classes = model.meta.get('classes') or []
    name = lambda i: classes[i] if i < len(classes) else str(i)  # noqa: E731
    if model.kind == 'detector':
        inst = sample.pred_instances
        keep = inst.scores >= args.score_thr
        print(f'{int(keep.sum())} detections with score >= {args.score_thr} '
              f'({len(inst.scores)} in all)')
        for box, score, label in zip(inst.bboxes[keep], inst.scores[keep], inst.labels[keep]):
            x1, y1, x2, y2 = (float(v) for v in box)
            print(f'  {name(int(label))} {float(score):.3f} [{x1:.1f}, {y1:.1f}, {x2:.1f}, '
                  f'{y2:.1f}]')
    elif model.kind == 'segmentor':
        import torch
        labels, counts = torch.unique(sample.pred_sem_seg.data, return_counts=True)
        total = int(counts.sum())
        print('label map ' + 'x'.join(str(s) for s in sample.pred_sem_seg.shape) + ': ' +
              ', '.join(f'{name(int(lab))} {100 * int(c) / total:.1f}%'
                        for lab, c in zip(labels, counts)))
    elif model.kind == 'classifier':
        top = sample.pred_score.topk(min(5, len(sample.pred_score)))
        print('top scores: ' + ', '.join(f'{name(int(i))} {float(s):.3f}'
                                         for s, i in zip(top.values, top.indices)))
    else:
        sys.exit(f'error: {args.model} is a {model.kind} export (feature maps): there is no '
                 f'result to draw; run it with OnnxModel(path).run(pixels)')
    if args.out:
        model.show(sample, args.image, args.out, score_thr=args.score_thr)
        print(f'drew the result into {args.out}')


if __name__ == '__main__':
    with one_line_refusals():
        main()
