"""What every ``tools/model_converters/*2mmvit.py`` does around its pure conversion function:
read the source safely, check the result against the model strictly, write a plain state dict.

A converter never ends in a traceback: :func:`run_converter` turns every failure into one line
``error: SRC: what the file is / why it cannot be converted`` and a non-zero exit, and the output
is written to a temporary file that is renamed only when complete, so a failed run writes
nothing."""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, Dict, Mapping

import torch

__all__ = ['converter_parser', 'read_source', 'check_and_write', 'run_converter',
           'ConversionError']


class ConversionError(Exception):
    """The source cannot be converted; the message says why, in one line."""


def converter_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write backbone keys only (no prefix, no head)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='load SRC with the full pickle (runs code in it: trusted files only)')
    return parser


def _what_it_holds(checkpoint) -> str:
    """' (it holds a DGT-T backbone in mmvit_ext's layout: ...)' for our own files, else ''."""
    from ...checkpoint import backbone_phrase
    from ..identify import identify_backbone
    from .common import unwrap_state_dict
    try:
        held = identify_backbone(unwrap_state_dict(checkpoint))
    except (KeyError, TypeError):
        return ''
    if not held:
        return ''
    if 'Swin' in held:
        return f' (it holds {held})'
    return (f' (it holds {backbone_phrase(held)} in mmvit_ext\'s layout already: use it '
            'directly, no conversion needed)')


def read_source(args) -> Mapping:
    """The source file, through the restricted unpickler unless ``--trust-pickle`` (both check
    first that the file is an intact torch checkpoint)."""
    from ...utils.checkfile import check_readable
    from ...utils.safe_load import safe_torch_load
    if not osp.isfile(args.src):
        raise ConversionError(f'{args.src} not found')
    if args.trust_pickle:
        check_readable(args.src)
        return torch.load(args.src, map_location='cpu', weights_only=False)
    return safe_torch_load(args.src, map_location='cpu')


def not_official(args, checkpoint, family: str, reason: str):
    """The error for a readable file that is not an official ``family`` checkpoint."""
    return ConversionError(f'{args.src} is not an official {family} checkpoint: {reason}'
                           f'{_what_it_holds(checkpoint)}')


def check_and_write(args, converted: Dict, build_backbone: Callable[[Dict], torch.nn.Module],
                    describe: str) -> None:
    """Build the matching backbone, compare every key strictly, write ``backbone.*`` +
    ``head.fc.*`` (or bare backbone keys with ``--backbone-only``)."""
    from ...checkpoint import check_finite, check_state_dict
    backbone_sd = {k: v for k, v in converted.items() if not k.startswith('head.')}
    check_finite(converted, args.src)
    check_state_dict(build_backbone(backbone_sd), backbone_sd, source=args.src)
    print(f'{args.src}: {describe}')
    if args.backbone_only:
        state_dict = backbone_sd
    else:
        state_dict = {(k if k.startswith('head.') else 'backbone.' + k): v
                      for k, v in converted.items()}
    tmp = f'{args.dst}.part'
    try:
        if osp.isdir(args.dst):
            raise ConversionError(f'the output {args.dst} is a directory; give a file name, e.g. '
                                  f'{osp.join(args.dst, "converted.pth")}')
        os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
        torch.save(state_dict, tmp)
        os.replace(tmp, args.dst)
    except OSError as e:  # the output's problem, not the source's
        raise ConversionError(f'could not write the output {args.dst}: {e.strerror or e} '
                              f'({args.src} itself was read and converted fine)') from e
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


def run_converter(main: Callable[[], None]) -> None:
    """Run a converter's ``main``; any failure is one line on stderr and exit status 1."""
    from ...checkpoint import CheckpointMismatchError, NonFiniteCheckpointError
    from ...utils.checkfile import CorruptCheckpointError
    from ...utils.safe_load import UnsafeCheckpointError
    from .flax_msgpack import FlaxMsgpackError
    expected = (ConversionError, CorruptCheckpointError, UnsafeCheckpointError,
                CheckpointMismatchError, NonFiniteCheckpointError, FlaxMsgpackError)
    try:
        main()
    except expected as e:
        sys.exit(f'error: {e}'.replace('\n', ' '))
    except KeyboardInterrupt:
        sys.exit('error: interrupted; nothing was written')
    except Exception as e:  # a file we did not anticipate: still one line, never a traceback
        src = next((a for a in sys.argv[1:] if not a.startswith('-')), '?')
        sys.exit(f'error: {src} could not be converted ({type(e).__name__}: {e}); it is not a '
                 'checkpoint of the expected format, or a damaged one'.replace('\n', ' '))
