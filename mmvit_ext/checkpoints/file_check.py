"""What a checkpoint file is, before anything unpickles it: so that a truncated download, an
empty file, a text file or a file of another format is reported as what it is, not as an unsafe
pickle or a traceback from deep inside ``torch.load``."""
import os.path as osp
import zipfile

from ..errors import Refusal

__all__ = ['CorruptCheckpointError', 'sniff_checkpoint', 'check_readable']


class CorruptCheckpointError(Refusal, RuntimeError):
    """The file is not a readable checkpoint (empty, truncated, damaged or another format)."""


def _is_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in '\r\n\t' for c in text)


def sniff_checkpoint(path: str) -> str:
    """The format of ``path`` by its first bytes: 'torch-zip', 'torch-legacy' (a pickle),
    'flax-msgpack', 'empty', 'text' or 'unknown'."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        return 'empty'
    if head[:4] == b'PK\x03\x04':
        return 'torch-zip'
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return 'torch-legacy'
    if 0x81 <= head[0] <= 0x8f or head[0] in (0xde, 0xdf):
        return 'flax-msgpack'
    if _is_text(head[:256]):
        return 'text'
    return 'unknown'


def check_readable(path: str, allow=('torch-zip', 'torch-legacy')) -> str:
    """Raise :class:`CorruptCheckpointError` unless ``path`` is an intact file of an allowed
    format (a zip's directory and every member's CRC are checked); returns the format."""
    size = osp.getsize(path)
    kind = sniff_checkpoint(path)
    if kind == 'torch-zip':
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise CorruptCheckpointError(
                f'{path} is a damaged or truncated torch checkpoint ({size} bytes: {e}); '
                'download or copy it again') from e
        if bad is not None:
            raise CorruptCheckpointError(f'{path} is a damaged torch checkpoint (member {bad} '
                                         'fails its CRC check); download or copy it again')
    if kind in allow:
        return kind
    described = {
        'empty': 'is empty (0 bytes)',
        'text': f'is a text file, not a checkpoint (it starts with {_first_line(path)!r})',
        'flax-msgpack': ('is a Flax msgpack file (the official QnA-ViT format), not a torch '
                         'checkpoint: convert it with tools/model_converters/qna2mmvit.py, or give '
                         'it to a QnAViT backbone\'s init_cfg, which reads it directly'),
        'torch-zip': 'is a torch checkpoint, not a Flax msgpack file',
        'torch-legacy': 'is a (legacy) torch checkpoint, not a Flax msgpack file',
        'unknown': f'is not a checkpoint of a known format ({size} bytes)',
    }[kind]
    raise CorruptCheckpointError(f'{path} {described}')


def _first_line(path: str) -> str:
    with open(path, 'rb') as f:
        line = f.read(60).split(b'\n')[0]
    return line.decode('utf-8', 'replace')
