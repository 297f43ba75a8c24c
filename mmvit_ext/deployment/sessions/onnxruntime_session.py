"""An exported file in onnxruntime (CPU)."""
from typing import Dict, Optional, Sequence

import numpy as np

from ..metadata import METADATA_KEY, ModelFileError

__all__ = ['OnnxRuntimeSession']


class OnnxRuntimeSession:
    precision = 'f32'

    def __init__(self, path: str, threads: Optional[int] = None,
                 providers: Sequence[str] = ('CPUExecutionProvider', )):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError('onnxruntime is not installed: pip install -r '
                              'requirements/deploy.txt') from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, options, providers=list(providers))
        except Exception as err:  # ORT raises its own types; say which file and why in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFileError(f'onnxruntime cannot load {path}: {first}') from None
        self.metadata = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input_name: pixels})
        return dict(zip(self.output_names, outputs))
