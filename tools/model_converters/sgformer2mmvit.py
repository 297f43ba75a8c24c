"""Convert an official SG-Former checkpoint (e.g. SG-Former-S.pth) to mmvit_ext keys.

    python tools/model_converters/sgformer2mmvit.py SRC DST [--weights ema|model] [--backbone-only]

SRC is a file of the official repository: timm's training dict (``state_dict``,
``state_dict_ema``, ``args``, ``optimizer``, ...) or a bare state dict. ``--weights ema`` (the
default) takes ``state_dict_ema``, the weights the published accuracy comes from; ``model`` takes
``state_dict``. DST is a plain, tensor-only state dict:

* default: the ImageNet classifier (``backbone.*`` + ``head.fc.*``), usable as ``load_from`` of
  configs/sgformer/sgformer-*_in1k.py and as ``init_cfg`` Pretrained of every det/seg config;
* ``--backbone-only``: backbone keys without prefix, no classifier head.

The file is loaded with the restricted unpickler (tensors, numpy data, argparse.Namespace); a file
holding other objects is refused unless ``--trust-pickle`` is given.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.models.backbones import SGFormer  # noqa: E402
from mmvit_ext.models.converters.cli import (check_and_write, converter_parser,  # noqa: E402
                                             not_official, read_source, run_converter)
from mmvit_ext.models.converters.sgformer import (infer_sgformer_arch,  # noqa: E402
                                                  load_official_sgformer)


def main():
    parser = converter_parser('Convert official SG-Former weights')
    parser.add_argument('--weights', choices=['ema', 'model'], default='ema',
                        help="'ema': state_dict_ema (default, the published accuracy); "
                        "'model': state_dict")
    args = parser.parse_args()
    checkpoint = read_source(args)
    if args.weights == 'ema' and isinstance(checkpoint, dict) and 'state_dict' in checkpoint \
            and 'state_dict_ema' not in checkpoint:
        print(f'warning: {args.src} has no state_dict_ema; taking state_dict')
    try:
        converted = load_official_sgformer(checkpoint, ema=args.weights == 'ema')
        arch = infer_sgformer_arch(converted, SGFormer.arch_zoo.values())
    except (KeyError, TypeError) as e:
        raise not_official(args, checkpoint, 'SG-Former', str(e.args[0])) from e
    check_and_write(args, converted, lambda sd: SGFormer(arch),
                    f'SG-Former with embed_dims={tuple(arch["embed_dims"])}, '
                    f'depths={tuple(arch["depths"])} ({args.weights} weights)')


if __name__ == '__main__':
    run_converter(main)
