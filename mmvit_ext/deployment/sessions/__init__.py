"""The runtimes an exported file runs in, one file each, chosen in one place
(:func:`open_session`). Each session takes the file's path and gives ``metadata`` (the
``mmvit_ext`` JSON string or None), ``input_shape``, ``output_names`` and ``run(pixels)`` ->
``{output name: array}``."""
from typing import Optional

__all__ = ['RUNTIMES', 'PRECISIONS', 'open_session']

RUNTIMES = ('onnxruntime', 'openvino')
#: OpenVINO's CPU inference precision: 'f32' (the default here: the same detections as
#: onnxruntime), 'bf16' / 'f16', or 'plugin' (the plugin's own choice: bf16 on CPUs with bf16)
PRECISIONS = ('f32', 'bf16', 'f16', 'plugin')


def open_session(path: str, runtime: str = 'onnxruntime', threads: Optional[int] = None,
                 precision: str = 'f32'):
    """A session of ``runtime`` over the file at ``path``."""
    from ...errors import ConfigValueError
    if runtime not in RUNTIMES:
        raise ConfigValueError(f'runtime {runtime!r} is not one of {list(RUNTIMES)}')
    if precision not in PRECISIONS:
        raise ConfigValueError(f'precision {precision!r} is not one of {list(PRECISIONS)}')
    if runtime == 'openvino':
        from .openvino_session import OpenVinoSession
        return OpenVinoSession(path, threads, precision)
    if precision != 'f32':
        raise ConfigValueError(f'precision {precision!r} is an OpenVINO setting; onnxruntime '
                               'runs the file in f32')
    from .onnxruntime_session import OnnxRuntimeSession
    return OnnxRuntimeSession(path, threads)
