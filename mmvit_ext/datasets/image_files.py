"""Is an image file there and whole? Answered from its first and last bytes, so that a dataset
of 100k images is checked in seconds before training starts, instead of failing as a traceback
after some iterations (or training on a half-grey image: OpenCV decodes a truncated JPEG with
a warning only).

:func:`image_file_problem` says what is wrong with one file, :func:`image_files_problems` with
many; :func:`decode_problem` tries the decoder, for a file that passed and still failed to load.
"""
import os
from typing import Iterable, List, Optional, Tuple

__all__ = ['image_file_problem', 'image_files_problems', 'decode_problem',
           'describe_image_problems']

# (magic bytes at offset 0, format name); WebP is RIFF....WEBP
_MAGIC = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'), (b'GIF87a', 'GIF'),
          (b'GIF89a', 'GIF'), (b'BM', 'BMP'), (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'),
          (b'\x00\x00\x00\x0cjP  ', 'JPEG 2000'), (b'\xff\x4f\xff\x51', 'JPEG 2000'),
          (b'v/1\x01', 'OpenEXR'), (b'#?RADIANCE', 'Radiance HDR'))
# where the end marker must be found: trailing bytes after it happen (padding, vendor data)
_TAIL = 1024


def _format(head: bytes) -> Optional[str]:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'WebP'
    if len(head) > 2 and head[0:1] == b'P' and head[1:2] in b'1234567' and head[2:3].isspace():
        return 'PNM'
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


def image_file_problem(path: str) -> Optional[str]:
    """'is missing', 'is empty', 'is a text file', 'is a truncated JPEG (no end-of-image
    marker)', ..., or None when the file looks whole. A format it does not know is left to the
    decoder (None), unless it is text."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return 'is missing'
    except OSError as error:
        return f'cannot be read ({error.strerror})'
    if not os.path.isfile(path):
        return 'is not a file'
    if size == 0:
        return 'is empty (0 bytes)'
    try:
        with open(path, 'rb') as f:
            head = f.read(512)
            f.seek(max(0, size - _TAIL))
            tail = f.read(_TAIL).rstrip(b'\x00')
    except OSError as error:
        return f'cannot be read ({error.strerror})'
    kind = _format(head)
    if kind is None:
        return f'is a text file, not an image (starts with {head[:40]!r})' \
            if _looks_like_text(head) else None
    if kind == 'JPEG' and b'\xff\xd9' not in tail:
        return f'is a truncated JPEG ({size} bytes, no end-of-image marker)'
    if kind == 'PNG' and b'IEND' not in tail:
        return f'is a truncated PNG ({size} bytes, no IEND chunk)'
    return None


def image_files_problems(paths: Iterable[str]) -> List[Tuple[str, str]]:
    """``(path, problem)`` for each file of ``paths`` (each once) that is not a whole image."""
    found, seen = [], set()
    for path in paths:
        if path in seen:
            continue
        seen.add(path)
        problem = image_file_problem(path)
        if problem:
            found.append((path, problem))
    return found


def decode_problem(path: str) -> Optional[str]:
    """Why OpenCV cannot decode ``path`` (after :func:`image_file_problem`), or None."""
    problem = image_file_problem(path)
    if problem:
        return problem
    try:
        import cv2
        import numpy as np
    except ImportError:  # nothing to decode with: the caller keeps its own error
        return None
    with open(path, 'rb') as f:
        data = np.frombuffer(f.read(), np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        return f'cannot be decoded ({str(error).strip().splitlines()[-1]})'
    return None if image is not None else 'cannot be decoded as an image (damaged or unknown ' \
        'format)'


def describe_image_problems(problems: List[Tuple[str, str]], total: int, source: str) -> str:
    shown = '; '.join(f'{path} {problem}' for path, problem in problems[:5])
    more = f' ... (+{len(problems) - 5} more)' if len(problems) > 5 else ''
    return (f'{source}: {len(problems)} of the {total} image files cannot train or be tested: '
            f'{shown}{more}. Restore them, or remove their entries from the annotation file.')
