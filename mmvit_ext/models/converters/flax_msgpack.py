"""Read Flax checkpoints (``flax.serialization`` msgpack) without JAX, Flax or msgpack installed.

Flax writes a nested map of names to values; a numpy array is an ExtType with code 1 whose payload
is itself msgpack: ``[shape, dtype name, raw C-order bytes]`` (code 2: a complex scalar, code 3: a
numpy scalar, same payload). This is the subset of msgpack such files use, decoded in pure Python.
"""
import struct
from typing import Any, Tuple

import numpy as np

__all__ = ['read_flax_msgpack', 'is_flax_msgpack_file', 'FlaxMsgpackError']


class FlaxMsgpackError(ValueError):
    """The bytes are not a (supported) Flax msgpack checkpoint."""


def read_flax_msgpack(data: bytes) -> Any:
    """Decode a whole Flax msgpack file into dicts / lists / numpy arrays / Python scalars."""
    value, end = _decode(memoryview(data), 0)
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


def _ext(code: int, payload: memoryview) -> Any:
    if code in (1, 3):  # ndarray / numpy scalar
        shape, dtype, raw = read_flax_msgpack(bytes(payload))
        arr = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
        return arr if code == 1 else arr[()]
    if code == 2:  # complex scalar
        real, imag = read_flax_msgpack(bytes(payload))
        return complex(real, imag)
    raise FlaxMsgpackError(f'unsupported msgpack extension type {code}')


def _decode(buf: memoryview, pos: int) -> Tuple[Any, int]:  # noqa: C901 (one branch per type)
    if pos >= len(buf):
        raise FlaxMsgpackError('truncated msgpack data')
    b = buf[pos]
    pos += 1
    if b <= 0x7f:
        return b, pos
    if b >= 0xe0:
        return b - 0x100, pos
    if 0x80 <= b <= 0x8f:
        return _map(buf, pos, b & 0x0f)
    if 0x90 <= b <= 0x9f:
        return _array(buf, pos, b & 0x0f)
    if 0xa0 <= b <= 0xbf:
        n = b & 0x1f
        return bytes(buf[pos:pos + n]).decode('utf-8'), pos + n
    fixed = {0xc0: None, 0xc2: False, 0xc3: True}
    if b in fixed:
        return fixed[b], pos
    sized = {  # type byte -> (struct format of the length/value, kind)
        0xc4: ('>B', 'bin'), 0xc5: ('>H', 'bin'), 0xc6: ('>I', 'bin'),
        0xd9: ('>B', 'str'), 0xda: ('>H', 'str'), 0xdb: ('>I', 'str'),
        0xdc: ('>H', 'array'), 0xdd: ('>I', 'array'), 0xde: ('>H', 'map'), 0xdf: ('>I', 'map'),
        0xcc: ('>B', 'int'), 0xcd: ('>H', 'int'), 0xce: ('>I', 'int'), 0xcf: ('>Q', 'int'),
        0xd0: ('>b', 'int'), 0xd1: ('>h', 'int'), 0xd2: ('>i', 'int'), 0xd3: ('>q', 'int'),
        0xca: ('>f', 'int'), 0xcb: ('>d', 'int'),
        0xc7: ('>B', 'ext'), 0xc8: ('>H', 'ext'), 0xc9: ('>I', 'ext'),
    }
    if b in sized:
        fmt, kind = sized[b]
        n = struct.calcsize(fmt)
        (value, ) = struct.unpack_from(fmt, buf, pos)
        pos += n
        if kind == 'int':
            return value, pos
        if kind == 'bin':
            return bytes(buf[pos:pos + value]), pos + value
        if kind == 'str':
            return bytes(buf[pos:pos + value]).decode('utf-8'), pos + value
        if kind == 'array':
            return _array(buf, pos, value)
        if kind == 'map':
            return _map(buf, pos, value)
        code = struct.unpack_from('>b', buf, pos)[0]
        return _ext(code, buf[pos + 1:pos + 1 + value]), pos + 1 + value
    if 0xd4 <= b <= 0xd8:  # fixext 1/2/4/8/16
        n = 1 << (b - 0xd4)
        code = struct.unpack_from('>b', buf, pos)[0]
        return _ext(code, buf[pos + 1:pos + 1 + n]), pos + 1 + n
    raise FlaxMsgpackError(f'unsupported msgpack type byte 0x{b:02x} at offset {pos - 1}')


def _array(buf, pos, n):
    out = []
    for _ in range(n):
        value, pos = _decode(buf, pos)
        out.append(value)
    return out, pos


def _map(buf, pos, n):
    out = {}
    for _ in range(n):
        key, pos = _decode(buf, pos)
        out[key], pos = _decode(buf, pos)
    return out, pos
