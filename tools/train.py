"""Train a detector, segmentor or classifier (mmdet 3.x CLI).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                          [--resume [CKPT]] [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os.path as osp
import sys

# `python tools/train.py` puts tools/ first on sys.path, not the repo root: add it so that the
# plugin imports from a checkout without PYTHONPATH.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmvit_ext  # noqa: E402,F401  (registry entries, safe checkpoint loading)
from mmengine.logging import print_log  # noqa: E402
from mmvit_ext.engine.runner_setup import add_common_args, build_runner, load_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work dir if no '
        'CKPT is given')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            sys.exit('error: --amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper runs on GPUs '
                     'only); on this machine train in fp32, without --amp')
        current = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if current in ('AmpOptimWrapper', 'FiniteAmpOptimWrapper'):
            print_log('AMP training is already enabled in the config', logger='current')
        else:
            # keep the config's guard: FiniteOptimWrapper becomes FiniteAmpOptimWrapper
            cfg.optim_wrapper.type = ('FiniteAmpOptimWrapper' if current == 'FiniteOptimWrapper'
                                      else 'AmpOptimWrapper')
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr')
        if not scale or 'base_batch_size' not in scale:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if '://' not in args.resume and not osp.isfile(args.resume):  # URLs: the safe loader
            sys.exit(f'error: --resume checkpoint {args.resume} not found')
        cfg.resume = True
        cfg.load_from = args.resume
    runner = build_runner(cfg, args, phases=('train', 'val'))
    runner.train()


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
