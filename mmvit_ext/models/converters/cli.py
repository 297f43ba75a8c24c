"""What every ``tools/model_converters/*2mmvit.py`` does around its pure conversion function:
read the source safely, check the result against the model strictly, write a plain state dict.

A converter never ends in a traceback: :func:`run_converter` turns every failure into one line
``error: SRC: what the file is / why it cannot be converted`` and a non-zero exit, and the output
is written through a temporary file that replaces it only when complete (never through a
symbolic link), so a failed run writes nothing."""
import argparse
import os
import os.path as osp
import stat
import sys
from typing import Callable, Dict, Mapping

import torch

from ...checkpoints import (backbone_phrase, check_finite, check_readable, check_state_dict,
                            safe_torch_load, unwrap_state_dict)
from ...errors import Refusal
from ...utils.atomic import atomic_write
from ..identify import identify_backbone

__all__ = ['converter_parser', 'read_source', 'check_and_write', 'run_converter',
           'ConversionError']


class ConversionError(Refusal):
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


def check_source(path: str) -> None:
    """A regular file, named for what it is otherwise."""
    if not osp.lexists(path):
        raise ConversionError(f'{path} not found')
    if osp.isdir(path):
        raise ConversionError(f'{path} is a directory; give the checkpoint file inside it')
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ConversionError(f'{path} is not a regular file (a device, a pipe or a socket); '
                              'give a checkpoint file')


def read_source(args) -> Mapping:
    """The source file, through the restricted unpickler unless ``--trust-pickle`` (both check
    first that the file is an intact torch checkpoint)."""
    check_source(args.src)
    if osp.lexists(args.dst) and osp.exists(args.dst) and osp.samefile(args.src, args.dst):
        raise ConversionError(f'the output {args.dst} is the source file itself; write the '
                              'converted weights to another file (the official file stays as '
                              'it is)')
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
    backbone_sd = {k: v for k, v in converted.items() if not k.startswith('head.')}
    check_finite(converted, args.src)
    check_state_dict(build_backbone(backbone_sd), backbone_sd, source=args.src)
    print(f'{args.src}: {describe}')
    if args.backbone_only:
        state_dict = backbone_sd
    else:
        state_dict = {(k if k.startswith('head.') else 'backbone.' + k): v
                      for k, v in converted.items()}
    if osp.isdir(args.dst):
        raise ConversionError(f'the output {args.dst} is a directory; give a file name, e.g. '
                              f'{osp.join(args.dst, "converted.pth")}')
    try:
        os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
        with atomic_write(args.dst) as tmp:
            torch.save(state_dict, tmp)
    except OSError as e:  # the output's problem, not the source's
        raise ConversionError(f'could not write the output {args.dst}: {e.strerror or e} '
                              f'({args.src} itself was read and converted fine)') from e
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


def run_converter(main: Callable[[], None]) -> None:
    """Run a converter's ``main``; any failure is one line on stderr and exit status 1."""
    try:
        main()
    except Refusal as e:
        sys.exit(f'error: {e}'.replace('\n', ' '))
    except KeyboardInterrupt:
        sys.exit('error: interrupted; nothing was written')
    except Exception as e:  # a file we did not anticipate: still one line, never a traceback
        src = next((a for a in sys.argv[1:] if not a.startswith('-')), '?')
        sys.exit(f'error: {src} could not be converted ({type(e).__name__}: {e}); it is not a '
                 'checkpoint of the expected format, or a damaged one'.replace('\n', ' '))
