"""Read Flax checkpoints (``flax.serialization`` msgpack) without JAX, Flax or msgpack installed.

Flax writes a nested map of names to values; a numpy array is an ExtType with code 1 whose payload
is itself msgpack: ``[shape, dtype name, raw C-order bytes]`` (code 2: a complex scalar, code 3: a
numpy scalar, same payload). This is the subset of msgpack such files use, decoded in pure Python.

Every read is bounds-checked and nesting is limited, so a truncated or damaged file raises
:class:`FlaxMsgpackError` (with the offset), never ``struct.error``, ``RecursionError`` or a
silently short value.
"""
import struct
from typing import Any, Tuple

import numpy as np

from ...errors import Refusal

__all__ = ['read_flax_msgpack', 'is_flax_msgpack_file', 'FlaxMsgpackError']


class FlaxMsgpackError(Refusal, ValueError):
    """The bytes are not a (supported) Flax msgpack checkpoint."""


MAX_DEPTH = 64  # a Flax parameter tree is a few levels deep


def read_flax_msgpack(data: bytes) -> Any:
    """Decode a whole Flax msgpack file into dicts / lists / numpy arrays / Python scalars."""
    try:
        value, end = _decode(memoryview(data), 0, 0)
    except FlaxMsgpackError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError, struct.error,
            UnicodeDecodeError, RecursionError) as e:  # a damaged value that slipped through
        raise FlaxMsgpackError(f'damaged msgpack data ({type(e).__name__}: {e})') from e
    if end != len(data):
        raise FlaxMsgpackError(f'trailing bytes after the msgpack object ({len(data) - end})')
    return value


def is_flax_msgpack_file(path) -> bool:
    """Whether a local file starts like a Flax checkpoint (a msgpack map) rather than a torch
    file (a zip archive ``PK..``, or a legacy pickle ``0x80 <protocol>``)."""
    import os.path as osp
    if not isinstance(path, str) or not osp.isfile(path):
        return False
    with open(path, 'rb') as f:
        head = f.read(2)
    if not head:
        return False
    # 0x81-0x8f: map of 1-15 entries; 0xde/0xdf: map16/map32. A lone 0x80 is a pickle opcode.
    return 0x81 <= head[0] <= 0x8f or head[0] in (0xde, 0xdf)


def _ext(code: int, payload: memoryview, depth: int) -> Any:
    if code in (1, 3):  # ndarray / numpy scalar
        value, end = _decode(payload, 0, depth + 1)
        if end != len(payload) or not isinstance(value, list) or len(value) != 3:
            raise FlaxMsgpackError('an array extension is not [shape, dtype, bytes]')
        shape, dtype, raw = value
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
                and isinstance(dtype, str) and isinstance(raw, bytes)):
            raise FlaxMsgpackError(f'an array extension has a bad shape or dtype ({shape!r:.40}, '
                                   f'{dtype!r:.20})')
        try:
            dt = np.dtype(dtype)
        except TypeError as e:
            raise FlaxMsgpackError(f'unknown array dtype {dtype!r:.40}') from e
        if dt.kind not in 'biufc' or dt.hasobject:  # numbers only: weights are never objects
            raise FlaxMsgpackError(f'an array of dtype {dtype!r:.40} is not numeric data')
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if dt.itemsize == 0 or count * dt.itemsize != len(raw):
            raise FlaxMsgpackError(f'array of shape {shape} and dtype {dtype} needs '
                                   f'{count * dt.itemsize} bytes, the file holds {len(raw)}')
        arr = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        return arr if code == 1 else arr[()]
    if code == 2:  # complex scalar
        value, end = _decode(payload, 0, depth + 1)
        if end != len(payload) or not isinstance(value, list) or len(value) != 2:
            raise FlaxMsgpackError('a complex extension is not [real, imag]')
        return complex(*value)
    raise FlaxMsgpackError(f'unsupported msgpack extension type {code}')


_SIZED = {  # type byte -> (struct format of the length/value, kind)
    0xc4: ('>B', 'bin'), 0xc5: ('>H', 'bin'), 0xc6: ('>I', 'bin'),
    0xd9: ('>B', 'str'), 0xda: ('>H', 'str'), 0xdb: ('>I', 'str'),
    0xdc: ('>H', 'array'), 0xdd: ('>I', 'array'), 0xde: ('>H', 'map'), 0xdf: ('>I', 'map'),
    0xcc: ('>B', 'int'), 0xcd: ('>H', 'int'), 0xce: ('>I', 'int'), 0xcf: ('>Q', 'int'),
    0xd0: ('>b', 'int'), 0xd1: ('>h', 'int'), 0xd2: ('>i', 'int'), 0xd3: ('>q', 'int'),
    0xca: ('>f', 'int'), 0xcb: ('>d', 'int'),
    0xc7: ('>B', 'ext'), 0xc8: ('>H', 'ext'), 0xc9: ('>I', 'ext'),
}


def _take(buf: memoryview, pos: int, n: int, what: str) -> memoryview:
    if n < 0 or pos + n > len(buf):
        raise FlaxMsgpackError(f'truncated msgpack data: {what} of {n} bytes at offset {pos}, '
                               f'{len(buf) - pos} left')
    return buf[pos:pos + n]


def _unpack(fmt: str, buf: memoryview, pos: int):
    return struct.unpack_from(fmt, _take(buf, pos, struct.calcsize(fmt), 'a length'))[0]


def _text(raw: memoryview, pos: int) -> str:
    try:
        return bytes(raw).decode('utf-8')
    except UnicodeDecodeError as e:
        raise FlaxMsgpackError(f'a string at offset {pos} is not UTF-8') from e


def _decode(buf: memoryview, pos: int, depth: int) -> Tuple[Any, int]:  # noqa: C901
    if depth > MAX_DEPTH:
        raise FlaxMsgpackError(f'msgpack data nested deeper than {MAX_DEPTH} levels at offset '
                               f'{pos}: not a Flax checkpoint')
    b = _take(buf, pos, 1, 'a type byte')[0]
    pos += 1
    if b <= 0x7f:
        return b, pos
    if b >= 0xe0:
        return b - 0x100, pos
    if 0x80 <= b <= 0x8f:
        return _map(buf, pos, b & 0x0f, depth)
    if 0x90 <= b <= 0x9f:
        return _array(buf, pos, b & 0x0f, depth)
    if 0xa0 <= b <= 0xbf:
        n = b & 0x1f
        return _text(_take(buf, pos, n, 'a string'), pos), pos + n
    fixed = {0xc0: None, 0xc2: False, 0xc3: True}
    if b in fixed:
        return fixed[b], pos
    if b in _SIZED:
        fmt, kind = _SIZED[b]
        value = _unpack(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        if kind == 'int':
            return value, pos
        if kind == 'bin':
            return bytes(_take(buf, pos, value, 'a byte string')), pos + value
        if kind == 'str':
            return _text(_take(buf, pos, value, 'a string'), pos), pos + value
        if kind == 'array':
            return _array(buf, pos, value, depth)
        if kind == 'map':
            return _map(buf, pos, value, depth)
        code = _unpack('>b', buf, pos)
        return _ext(code, _take(buf, pos + 1, value, 'an extension'), depth), pos + 1 + value
    if 0xd4 <= b <= 0xd8:  # fixext 1/2/4/8/16
        n = 1 << (b - 0xd4)
        code = _unpack('>b', buf, pos)
        return _ext(code, _take(buf, pos + 1, n, 'an extension'), depth), pos + 1 + n
    raise FlaxMsgpackError(f'unsupported msgpack type byte 0x{b:02x} at offset {pos - 1}')


def _array(buf, pos, n, depth):
    if n > len(buf) - pos:  # every element takes at least one byte
        raise FlaxMsgpackError(f'truncated msgpack data: an array of {n} elements at offset '
                               f'{pos}, {len(buf) - pos} bytes left')
    out = []
    for _ in range(n):
        value, pos = _decode(buf, pos, depth + 1)
        out.append(value)
    return out, pos


def _map(buf, pos, n, depth):
    if 2 * n > len(buf) - pos:
        raise FlaxMsgpackError(f'truncated msgpack data: a map of {n} entries at offset {pos}, '
                               f'{len(buf) - pos} bytes left')
    out = {}
    for _ in range(n):
        key, pos = _decode(buf, pos, depth + 1)
        if isinstance(key, (list, dict, bytearray)) or hasattr(key, 'shape'):
            raise FlaxMsgpackError(f'a map key at offset {pos} is not a name')
        out[key], pos = _decode(buf, pos, depth + 1)
    return out, pos
