"""What tools/train.py and tools/test.py share: config loading and CLI-to-config plumbing.

The CLI mirrors mmdet 3.x's (``--work-dir --amp --auto-scale-lr --resume [CKPT] --cfg-options
--launcher --local_rank/--local-rank``), for detection, segmentation and classification configs.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from ..apis.config_path import resolve_config_path
from ..datasets.data_check import check_dataset_paths
from .cpu_distributed import setup_cpu_distributed

__all__ = ['add_common_args', 'load_config', 'build_runner']


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs (xxx=yyy), e.g. '
        'train_dataloader.batch_size=4 model.backbone.arch=small')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument(
        '--skip-data-check', action='store_true',
        help='do not check that the dataset folders exist before building the runner')
    # torch >= 2.0 launchers pass --local-rank, older ones --local_rank: accept both.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args) -> Config:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    try:
        path = resolve_config_path(args.config)
    except FileNotFoundError as e:
        raise SystemExit(f'error: {e}')
    if not osp.isfile(path):
        raise SystemExit(f'error: config file {args.config} not found')
    cfg = Config.fromfile(path)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    from .config_check import check_config_values
    check_config_values(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg, args, phases):
    """Check data, set up CPU distributed if needed, and build the Runner."""
    if not args.skip_data_check:
        check_dataset_paths(cfg, phases)
    setup_cpu_distributed(cfg, args.launcher)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
