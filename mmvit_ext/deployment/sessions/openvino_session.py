"""An exported file in OpenVINO's CPU plugin.

OpenVINO reads the ONNX file itself (no conversion step) and keeps its metadata under the
model's ``rt_info['framework']``. Its CPU plugin runs in bf16 by default on CPUs that have bf16
(AVX512-BF16, AMX): a Mask R-CNN's scores then move by about 1e-3 and most detections change
(``docs/en/deployment.md`` has the measurement). Here the precision is f32 unless asked
otherwise; ``precision='plugin'`` leaves the plugin's own choice.
"""
from typing import Dict, Optional

import numpy as np

from ..metadata import METADATA_KEY, ModelFileError

__all__ = ['OpenVinoSession']

_HINTS = {'f32': 'f32', 'bf16': 'bf16', 'f16': 'f16'}


class OpenVinoSession:

    def __init__(self, path: str, threads: Optional[int] = None, precision: str = 'f32'):
        try:
            import openvino as ov
        except ImportError:
            raise ImportError('OpenVINO is not installed: pip install openvino') from None
        core = ov.Core()
        try:
            model = core.read_model(path)
        except Exception as err:  # noqa: BLE001  (OpenVINO's own types: one line)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFileError(f'OpenVINO cannot read {path}: {first}') from None
        self.metadata = None
        if model.has_rt_info(['framework', METADATA_KEY]):
            self.metadata = model.get_rt_info(['framework', METADATA_KEY]).astype(str)
        config = {}
        if precision in _HINTS:
            config['INFERENCE_PRECISION_HINT'] = _HINTS[precision]
        if threads:
            config['INFERENCE_NUM_THREADS'] = int(threads)
        self.compiled = core.compile_model(model, 'CPU', config)
        #: what the plugin runs in ('f32', 'bf16', ...), after its own choice
        self.precision = _short(self.compiled.get_property('INFERENCE_PRECISION_HINT'))
        self.input_shape = tuple(d.get_length() if d.is_static else None
                                 for d in self.compiled.inputs[0].get_partial_shape())
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        results = self.compiled([pixels])
        return {o.get_any_name(): results[o] for o in self.compiled.outputs}


def _short(element_type) -> str:
    names = {'float32': 'f32', 'bfloat16': 'bf16', 'float16': 'f16', 'f32': 'f32',
             'bf16': 'bf16', 'f16': 'f16'}
    text = str(element_type).lower()
    return next((short for name, short in names.items() if f"'{name}'" in text or text == name),
                text)
