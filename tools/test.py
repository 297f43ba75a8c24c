"""Evaluate a checkpoint (mmdet 3.x CLI), for detection, segmentation and classification configs.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                         [--tta] [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os.path as osp
import sys
from copy import deepcopy

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmvit_ext  # noqa: E402,F401
from mmengine.config import ConfigDict  # noqa: E402
from mmvit_ext.engine.runner_setup import add_common_args, build_runner, load_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='detection/classification: dump predictions to this .pkl file; '
        'segmentation: write prediction maps into this directory')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save drawn predictions under work_dir/SHOW_DIR')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds between shows')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    add_common_args(parser)
    return parser.parse_args()


def _scope(cfg):
    return cfg.get('default_scope', 'mmdet')


def _enable_visualization(cfg, args):
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise RuntimeError('--show/--show-dir need a `visualization` hook in default_hooks')
    vis = hooks.visualization
    if _scope(cfg) == 'mmpretrain':
        vis.enable = True
    else:
        vis.draw = True
    vis.wait_time = args.wait_time
    if args.show:
        vis.show = True
    if args.show_dir:
        if _scope(cfg) == 'mmseg':  # mmseg's hook saves through the visualizer
            cfg.visualizer['save_dir'] = args.show_dir
        else:
            vis['out_dir' if _scope(cfg) == 'mmpretrain' else 'test_out_dir'] = args.show_dir


def _enable_tta(cfg):
    roi_head = cfg.model.get('roi_head') or {}
    if _scope(cfg) == 'mmdet' and roi_head.get('mask_head'):  # Mask / Cascade Mask R-CNN
        sys.exit('error: --tta: mmdet 3.3 merges test-time augmentations of boxes only ("TTA of '
                 'instance segmentation does not support now"), and this config predicts masks. '
                 'Test it without --tta; --tta works for box-only detectors, segmentors and '
                 'classifiers.')
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        if _scope(cfg) != 'mmdet':
            raise RuntimeError('--tta needs tta_model and tta_pipeline in the config')
        # mmdet's default: horizontal-flip TTA merged by NMS
        cfg.tta_model = cfg.get('tta_model') or dict(
            type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                             max_per_img=100))
        if 'tta_pipeline' not in cfg:
            data = cfg.test_dataloader.dataset
            while 'dataset' in data:
                data = data['dataset']
            pipeline = deepcopy(data.pipeline)
            pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                            [dict(type='PackDetInputs',
                                  meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                             'scale_factor', 'flip', 'flip_direction'))]])
            cfg.tta_pipeline = pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main():
    args = parse_args()
    cfg = load_config(args)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):  # URLs: the safe loader
        sys.exit(f'error: checkpoint {args.checkpoint} not found')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        _enable_visualization(cfg, args)
    if args.tta:
        _enable_tta(cfg)
    if args.out and _scope(cfg) == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    runner = build_runner(cfg, args, phases=('test', ))
    if args.out and _scope(cfg) != 'mmseg':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl/.pickle file, got {args.out}')
        if _scope(cfg) == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        else:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
