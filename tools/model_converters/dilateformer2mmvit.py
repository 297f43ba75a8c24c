"""Convert an official DilateFormer checkpoint to mmvit_ext keys.

    python tools/model_converters/dilateformer2mmvit.py SRC DST [--ema] [--backbone-only]

SRC is a file of the official repository (a training dict with ``model``/``model_ema``/``args``...,
or a bare state dict). DST is a plain, tensor-only state dict (loads with torch's safe
``weights_only=True``):

* default: the ImageNet classifier (``backbone.*`` + ``head.fc.*``), usable as ``load_from`` of
  configs/dilateformer/dilateformer-*_in1k.py and as ``init_cfg`` Pretrained of every det/seg
  config (the backbone takes the ``backbone.`` part);
* ``--backbone-only``: backbone keys without prefix, no classifier head.

The file is loaded with the restricted unpickler (tensors, numpy data, argparse.Namespace); a file
holding other objects is refused unless ``--trust-pickle`` is given.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmvit_ext.checkpoint import CheckpointMismatchError, check_state_dict  # noqa: E402
from mmvit_ext.models.backbones import DilateFormer  # noqa: E402
from mmvit_ext.models.converters.dilateformer import (  # noqa: E402
    infer_dilateformer_arch, load_official_dilateformer)
from mmvit_ext.utils.safe_load import safe_torch_load  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description='Convert official DilateFormer weights')
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument('--ema', action='store_true',
                        help='take model_ema instead of model when both are present')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write backbone keys only (no prefix, no head)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='load SRC with the full pickle (runs code in it: trusted files only)')
    args = parser.parse_args()
    if not osp.isfile(args.src):
        sys.exit(f'error: {args.src} not found')
    if args.trust_pickle:
        checkpoint = torch.load(args.src, map_location='cpu', weights_only=False)
    else:
        checkpoint = safe_torch_load(args.src, map_location='cpu')
    try:
        converted = load_official_dilateformer(checkpoint, prefer_ema=args.ema)
    except KeyError as e:
        sys.exit(f'error: {args.src}: {e.args[0]}')
    # Every key must land on our model: build the matching backbone and compare strictly.
    backbone_sd = {k: v for k, v in converted.items() if not k.startswith('head.')}
    arch = infer_dilateformer_arch(backbone_sd)
    try:
        check_state_dict(DilateFormer(arch, out_indices=(3, )), backbone_sd, source=args.src)
    except CheckpointMismatchError as e:
        sys.exit(f'error: {e}')
    print(f'{args.src}: DilateFormer with embed_dims={arch["embed_dims"]}, depths={arch["depths"]}')
    if args.backbone_only:
        state_dict = {k: v for k, v in converted.items() if not k.startswith('head.')}
    else:
        state_dict = {(k if k.startswith('head.') else 'backbone.' + k): v
                      for k, v in converted.items()}
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(state_dict, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
