"""Convert an official QnA-ViT Flax checkpoint to mmvit_ext keys (no JAX/Flax needed).

    python tools/model_converters/qna2mmvit.py SRC DST --arch tiny|tiny_7x7|small|base
        [--backbone-only]

SRC is a Flax msgpack file of the official repository (``checkpoint_<step>``: a whole TrainState
or bare params). DST is a plain, tensor-only state dict: ``backbone.*`` + ``head.fc.*`` (the
ImageNet classifier), or backbone keys only with ``--backbone-only``. The result is checked
strictly against ``QnAViT(arch)``: every leaf must land on a parameter.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.models.backbones import QnAViT  # noqa: E402
from mmvit_ext.models.converters.cli import (ConversionError, check_and_write,  # noqa: E402
                                             converter_parser, run_converter)
from mmvit_ext.models.converters.flax_msgpack import FlaxMsgpackError  # noqa: E402
from mmvit_ext.models.converters.qna import load_official_qna  # noqa: E402
from mmvit_ext.checkpoints import check_readable  # noqa: E402


def main():
    parser = converter_parser('Convert official QnA-ViT (Flax msgpack) weights')
    parser.add_argument('--arch', required=True, choices=sorted(QnAViT.arch_zoo),
                        help='variant (tiny and tiny_7x7 differ only in kernel size)')
    args = parser.parse_args()
    if not osp.isfile(args.src):
        raise ConversionError(f'{args.src} not found')
    check_readable(args.src, allow=('flax-msgpack', ))
    try:
        converted = load_official_qna(args.src)
    except FlaxMsgpackError as e:
        raise ConversionError(f'{args.src} is a damaged or unsupported Flax msgpack file: {e}')
    except (KeyError, TypeError) as e:
        raise ConversionError(f'{args.src} is a Flax msgpack file but not an official QnA-ViT '
                              f'checkpoint: {e.args[0]}') from e
    check_and_write(args, converted, lambda sd: QnAViT(args.arch, out_indices=(3, )),
                    f'QnA-ViT {args.arch}')


if __name__ == '__main__':
    run_converter(main)
