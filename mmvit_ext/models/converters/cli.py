"""What every ``tools/model_converters/*2mmvit.py`` does around its pure conversion function:
read the source safely, check the result against the model strictly, write a plain state dict."""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, Dict, Mapping

import torch

__all__ = ['converter_parser', 'read_source', 'check_and_write']


def converter_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write backbone keys only (no prefix, no head)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='load SRC with the full pickle (runs code in it: trusted files only)')
    return parser


def read_source(args) -> Mapping:
    """The source file, through the restricted unpickler unless ``--trust-pickle``."""
    from ...utils.safe_load import safe_torch_load
    if not osp.isfile(args.src):
        sys.exit(f'error: {args.src} not found')
    if args.trust_pickle:
        return torch.load(args.src, map_location='cpu', weights_only=False)
    return safe_torch_load(args.src, map_location='cpu')


def check_and_write(args, converted: Dict, build_backbone: Callable[[Dict], torch.nn.Module],
                    describe: str) -> None:
    """Build the matching backbone, compare every key strictly, write ``backbone.*`` +
    ``head.fc.*`` (or bare backbone keys with ``--backbone-only``)."""
    from ...checkpoint import CheckpointMismatchError, check_state_dict
    backbone_sd = {k: v for k, v in converted.items() if not k.startswith('head.')}
    try:
        check_state_dict(build_backbone(backbone_sd), backbone_sd, source=args.src)
    except (CheckpointMismatchError, KeyError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'{args.src}: {describe}')
    if args.backbone_only:
        state_dict = backbone_sd
    else:
        state_dict = {(k if k.startswith('head.') else 'backbone.' + k): v
                      for k, v in converted.items()}
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(state_dict, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')
