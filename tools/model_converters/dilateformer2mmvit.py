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
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.models.backbones import DilateFormer  # noqa: E402
from mmvit_ext.models.converters.cli import (check_and_write, converter_parser,  # noqa: E402
                                             not_official, read_source, run_converter)
from mmvit_ext.models.converters.dilateformer import (  # noqa: E402
    infer_dilateformer_arch, load_official_dilateformer)


def main():
    parser = converter_parser('Convert official DilateFormer weights')
    parser.add_argument('--ema', action='store_true',
                        help='take model_ema instead of model when both are present')
    args = parser.parse_args()
    checkpoint = read_source(args)
    try:
        converted = load_official_dilateformer(checkpoint, prefer_ema=args.ema)
        arch = infer_dilateformer_arch(converted)
    except (KeyError, TypeError) as e:
        raise not_official(args, checkpoint, 'DilateFormer', str(e.args[0])) from e
    check_and_write(args, converted, lambda sd: DilateFormer(arch, out_indices=(3, )),
                    f'DilateFormer with embed_dims={arch["embed_dims"]}, depths={arch["depths"]}')


if __name__ == '__main__':
    run_converter(main)
